"""Initial Optiq schema: every enum type, table, key and index of ``optiq_engine.io.schema``.

Written out in full rather than built from ``schema.metadata``, so that later changes to the schema
module never change what this revision did; ``tests/io/test_schema.py`` checks that an upgraded database
matches the metadata.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

ENUM_TYPES: dict[str, tuple[str, ...]] = {
    "MembershipRole": ("OWNER", "ADMIN", "MEMBER", "VIEWER"),
    "SubscriptionPlan": ("FREE", "STARTER", "PROFESSIONAL", "ENTERPRISE"),
    "SubscriptionStatus": ("ACTIVE", "TRIALING", "PAST_DUE", "CANCELED", "PAUSED"),
    "PlatformCode": ("GOOGLE_ADS", "META", "TIKTOK"),
    "AdAccountStatus": ("ACTIVE", "PAUSED", "ARCHIVED", "DELETED"),
    "EventType": ("PAGE_VIEW", "CONVERSION", "CUSTOM"),
    "AttributionModel": (
        "FIRST_TOUCH",
        "LAST_TOUCH",
        "LAST_NON_DIRECT",
        "LINEAR",
        "POSITION_BASED",
        "TIME_DECAY",
        "MARKOV",
        "SHAPLEY",
        "DATA_DRIVEN",
    ),
    "JourneyStatus": ("IN_PROGRESS", "CONVERTED", "ABANDONED"),
    "AlertType": ("SPEND_THRESHOLD", "CONVERSION_DROP", "CPA_SPIKE", "ROAS_DROP", "CLICK_ANOMALY", "CUSTOM"),
    "AlertSeverity": ("INFO", "WARNING", "CRITICAL"),
    "AlertRuleStatus": ("ACTIVE", "PAUSED", "ARCHIVED"),
    "AlertEventStatus": ("TRIGGERED", "ACKNOWLEDGED", "RESOLVED", "DISMISSED"),
    "IngestionJobType": ("DAILY_SYNC", "BACKFILL", "MANUAL"),
    "IngestionJobStatus": ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"),
}

#: Created in this order, dropped in reverse (a table after the tables it references).
TABLES: tuple[str, ...] = (
    "Organization",
    "Platform",
    "AdAccount",
    "AlertRule",
    "GoogleAdsCredential",
    "IngestionJob",
    "Journey",
    "MetaAdsCredential",
    "OrganizationSettings",
    "Subscription",
    "TikTokAdsCredential",
    "TrackingSite",
    "User",
    "Account",
    "AlertEvent",
    "Campaign",
    "DailyAdAccountMetric",
    "InAppNotification",
    "Membership",
    "Session",
    "TrackingEvent",
    "Ad",
    "DailyCampaignMetric",
    "JourneyEvent",
    "DailyAdMetric",
    "TouchPoint",
    "AttributionLink",
)


def _enum(name: str) -> postgresql.ENUM:
    """A reference to an enum type created in :func:`upgrade` (no CREATE TYPE with the table)."""
    return postgresql.ENUM(*ENUM_TYPES[name], name=name, create_type=False)


def _audit() -> tuple[sa.Column, sa.Column]:
    now = sa.text("CURRENT_TIMESTAMP")
    return (
        sa.Column("createdAt", sa.TIMESTAMP(timezone=True), server_default=now, nullable=False),
        sa.Column("updatedAt", sa.TIMESTAMP(timezone=True), server_default=now, nullable=False),
    )


def upgrade() -> None:
    bind = op.get_bind()
    for name, values in ENUM_TYPES.items():
        postgresql.ENUM(*values, name=name).create(bind, checkfirst=False)

    op.create_table(
        "Organization",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        *_audit(),
        sa.PrimaryKeyConstraint("id", name="Organization_pkey"),
    )
    op.create_index("Organization_slug_key", "Organization", ["slug"], unique=True)
    op.create_table(
        "Platform",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("code", _enum("PlatformCode"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        *_audit(),
        sa.PrimaryKeyConstraint("id", name="Platform_pkey"),
    )
    op.create_index("Platform_code_key", "Platform", ["code"], unique=True)
    op.create_table(
        "AdAccount",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("platformId", sa.Text(), nullable=False),
        sa.Column("externalId", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("currency", sa.Text(), server_default=sa.text("'USD'"), nullable=False),
        sa.Column("timezone", sa.Text(), server_default=sa.text("'UTC'"), nullable=False),
        sa.Column("status", _enum("AdAccountStatus"), server_default=sa.text("'ACTIVE'"), nullable=False),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="AdAccount_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["platformId"], ["Platform.id"], name="AdAccount_platformId_fkey", onupdate="CASCADE", ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name="AdAccount_pkey"),
    )
    op.create_index(
        "AdAccount_organizationId_platformId_externalId_key",
        "AdAccount",
        ["organizationId", "platformId", "externalId"],
        unique=True,
    )
    op.create_table(
        "AlertRule",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("type", _enum("AlertType"), nullable=False),
        sa.Column("severity", _enum("AlertSeverity"), server_default=sa.text("'WARNING'"), nullable=False),
        sa.Column("status", _enum("AlertRuleStatus"), server_default=sa.text("'ACTIVE'"), nullable=False),
        sa.Column("config", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("evaluationInterval", sa.Integer(), server_default=sa.text("3600"), nullable=False),
        sa.Column("lastEvaluatedAt", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("notifyEmail", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("notifyInApp", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("notifySlack", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="AlertRule_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="AlertRule_pkey"),
    )
    op.create_index("AlertRule_organizationId_status_idx", "AlertRule", ["organizationId", "status"], unique=False)
    op.create_index("AlertRule_status_lastEvaluatedAt_idx", "AlertRule", ["status", "lastEvaluatedAt"], unique=False)
    op.create_table(
        "GoogleAdsCredential",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("customerId", sa.Text(), nullable=False),
        sa.Column("refreshTokenEnc", sa.Text(), nullable=False),
        sa.Column("accessTokenEnc", sa.Text(), nullable=True),
        sa.Column("accessTokenExpiresAt", sa.TIMESTAMP(timezone=True), nullable=True),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="GoogleAdsCredential_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="GoogleAdsCredential_pkey"),
    )
    op.create_index(
        "GoogleAdsCredential_organizationId_customerId_key",
        "GoogleAdsCredential",
        ["organizationId", "customerId"],
        unique=True,
    )
    op.create_table(
        "IngestionJob",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("platform", _enum("PlatformCode"), nullable=False),
        sa.Column("jobType", _enum("IngestionJobType"), nullable=False),
        sa.Column("status", _enum("IngestionJobStatus"), server_default=sa.text("'QUEUED'"), nullable=False),
        sa.Column("idempotencyKey", sa.Text(), nullable=True),
        sa.Column("payload", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("runAt", sa.TIMESTAMP(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("maxAttempts", sa.Integer(), server_default=sa.text("3"), nullable=False),
        sa.Column("lockedAt", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("lockedBy", sa.Text(), nullable=True),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="IngestionJob_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="IngestionJob_pkey"),
    )
    op.create_index("IngestionJob_idempotencyKey_key", "IngestionJob", ["idempotencyKey"], unique=True)
    op.create_index(
        "IngestionJob_organizationId_platform_jobType_idx",
        "IngestionJob",
        ["organizationId", "platform", "jobType"],
        unique=False,
    )
    op.create_index("IngestionJob_status_runAt_idx", "IngestionJob", ["status", "runAt"], unique=False)
    op.create_table(
        "Journey",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("anonId", sa.Text(), nullable=False),
        sa.Column("sessionId", sa.Text(), nullable=True),
        sa.Column("status", _enum("JourneyStatus"), server_default=sa.text("'IN_PROGRESS'"), nullable=False),
        sa.Column("startedAt", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("convertedAt", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("lastActivityAt", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("conversionValue", sa.BigInteger(), nullable=True),
        sa.Column("conversionName", sa.Text(), nullable=True),
        sa.Column("firstUtmSource", sa.Text(), nullable=True),
        sa.Column("firstUtmMedium", sa.Text(), nullable=True),
        sa.Column("firstUtmCampaign", sa.Text(), nullable=True),
        sa.Column("lastUtmSource", sa.Text(), nullable=True),
        sa.Column("lastUtmMedium", sa.Text(), nullable=True),
        sa.Column("lastUtmCampaign", sa.Text(), nullable=True),
        sa.Column("touchPointCount", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("eventCount", sa.Integer(), server_default=sa.text("0"), nullable=False),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="Journey_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="Journey_pkey"),
    )
    op.create_index("Journey_organizationId_anonId_idx", "Journey", ["organizationId", "anonId"], unique=False)
    op.create_index(
        "Journey_organizationId_convertedAt_idx", "Journey", ["organizationId", "convertedAt"], unique=False
    )
    op.create_index(
        "Journey_organizationId_status_lastActivityAt_idx",
        "Journey",
        ["organizationId", "status", "lastActivityAt"],
        unique=False,
    )
    op.create_table(
        "MetaAdsCredential",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("adAccountId", sa.Text(), nullable=False),
        sa.Column("accessTokenEnc", sa.Text(), nullable=False),
        sa.Column("accessTokenExpiresAt", sa.TIMESTAMP(timezone=True), nullable=True),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="MetaAdsCredential_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="MetaAdsCredential_pkey"),
    )
    op.create_index(
        "MetaAdsCredential_organizationId_adAccountId_key",
        "MetaAdsCredential",
        ["organizationId", "adAccountId"],
        unique=True,
    )
    op.create_table(
        "OrganizationSettings",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("alertSettings", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("attributionSettings", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("trackingSettings", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="OrganizationSettings_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="OrganizationSettings_pkey"),
    )
    op.create_index("OrganizationSettings_organizationId_key", "OrganizationSettings", ["organizationId"], unique=True)
    op.create_table(
        "Subscription",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("plan", _enum("SubscriptionPlan"), server_default=sa.text("'FREE'"), nullable=False),
        sa.Column("status", _enum("SubscriptionStatus"), server_default=sa.text("'ACTIVE'"), nullable=False),
        sa.Column("stripeCustomerId", sa.Text(), nullable=True),
        sa.Column("stripeSubscriptionId", sa.Text(), nullable=True),
        sa.Column("currentPeriodStart", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("currentPeriodEnd", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("monthlyEventLimit", sa.BigInteger(), nullable=True),
        sa.Column("monthlySpendLimit", sa.BigInteger(), nullable=True),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="Subscription_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="Subscription_pkey"),
    )
    op.create_index("Subscription_organizationId_key", "Subscription", ["organizationId"], unique=True)
    op.create_index("Subscription_stripeCustomerId_key", "Subscription", ["stripeCustomerId"], unique=True)
    op.create_index("Subscription_stripeSubscriptionId_key", "Subscription", ["stripeSubscriptionId"], unique=True)
    op.create_table(
        "TikTokAdsCredential",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("advertiserId", sa.Text(), nullable=False),
        sa.Column("accessTokenEnc", sa.Text(), nullable=False),
        sa.Column("refreshTokenEnc", sa.Text(), nullable=False),
        sa.Column("accessTokenExpiresAt", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("refreshTokenExpiresAt", sa.TIMESTAMP(timezone=True), nullable=True),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="TikTokAdsCredential_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="TikTokAdsCredential_pkey"),
    )
    op.create_index(
        "TikTokAdsCredential_organizationId_advertiserId_key",
        "TikTokAdsCredential",
        ["organizationId", "advertiserId"],
        unique=True,
    )
    op.create_table(
        "TrackingSite",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("publicKey", sa.Text(), nullable=False),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="TrackingSite_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="TrackingSite_pkey"),
    )
    op.create_index("TrackingSite_organizationId_domain_key", "TrackingSite", ["organizationId", "domain"], unique=True)
    op.create_index("TrackingSite_publicKey_key", "TrackingSite", ["publicKey"], unique=True)
    op.create_table(
        "User",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("emailVerified", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("image", sa.Text(), nullable=True),
        sa.Column("passwordHash", sa.Text(), nullable=True),
        sa.Column("activeOrgId", sa.Text(), nullable=True),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["activeOrgId"], ["Organization.id"], name="User_activeOrgId_fkey", onupdate="CASCADE", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="User_pkey"),
    )
    op.create_index("User_email_key", "User", ["email"], unique=True)
    op.create_table(
        "Account",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("providerAccountId", sa.Text(), nullable=False),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.Integer(), nullable=True),
        sa.Column("token_type", sa.Text(), nullable=True),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("id_token", sa.Text(), nullable=True),
        sa.Column("session_state", sa.Text(), nullable=True),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["userId"], ["User.id"], name="Account_userId_fkey", onupdate="CASCADE", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="Account_pkey"),
    )
    op.create_index("Account_provider_providerAccountId_key", "Account", ["provider", "providerAccountId"], unique=True)
    op.create_index("Account_userId_idx", "Account", ["userId"], unique=False)
    op.create_table(
        "AlertEvent",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("alertRuleId", sa.Text(), nullable=False),
        sa.Column("status", _enum("AlertEventStatus"), server_default=sa.text("'TRIGGERED'"), nullable=False),
        sa.Column("severity", _enum("AlertSeverity"), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("context", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column(
            "triggeredAt", sa.TIMESTAMP(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False
        ),
        sa.Column("acknowledgedAt", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("acknowledgedBy", sa.Text(), nullable=True),
        sa.Column("resolvedAt", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("resolvedBy", sa.Text(), nullable=True),
        sa.Column("dismissedAt", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("dismissedBy", sa.Text(), nullable=True),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["acknowledgedBy"],
            ["User.id"],
            name="AlertEvent_acknowledgedBy_fkey",
            onupdate="CASCADE",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["alertRuleId"],
            ["AlertRule.id"],
            name="AlertEvent_alertRuleId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dismissedBy"], ["User.id"], name="AlertEvent_dismissedBy_fkey", onupdate="CASCADE", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="AlertEvent_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["resolvedBy"], ["User.id"], name="AlertEvent_resolvedBy_fkey", onupdate="CASCADE", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="AlertEvent_pkey"),
    )
    op.create_index(
        "AlertEvent_alertRuleId_triggeredAt_idx", "AlertEvent", ["alertRuleId", "triggeredAt"], unique=False
    )
    op.create_index(
        "AlertEvent_organizationId_severity_triggeredAt_idx",
        "AlertEvent",
        ["organizationId", "severity", "triggeredAt"],
        unique=False,
    )
    op.create_index(
        "AlertEvent_organizationId_status_triggeredAt_idx",
        "AlertEvent",
        ["organizationId", "status", "triggeredAt"],
        unique=False,
    )
    op.create_table(
        "Campaign",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("adAccountId", sa.Text(), nullable=False),
        sa.Column("externalId", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("objective", sa.Text(), nullable=True),
        sa.Column("startDate", sa.Date(), nullable=True),
        sa.Column("endDate", sa.Date(), nullable=True),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["adAccountId"], ["AdAccount.id"], name="Campaign_adAccountId_fkey", onupdate="CASCADE", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="Campaign_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="Campaign_pkey"),
    )
    op.create_index("Campaign_adAccountId_externalId_key", "Campaign", ["adAccountId", "externalId"], unique=True)
    op.create_index("Campaign_organizationId_idx", "Campaign", ["organizationId"], unique=False)
    op.create_table(
        "DailyAdAccountMetric",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("adAccountId", sa.Text(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("impressions", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("clicks", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("spendMicros", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("conversions", sa.Double(), server_default=sa.text("0"), nullable=False),
        sa.Column("revenueMicros", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["adAccountId"],
            ["AdAccount.id"],
            name="DailyAdAccountMetric_adAccountId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="DailyAdAccountMetric_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="DailyAdAccountMetric_pkey"),
    )
    op.create_index(
        "DailyAdAccountMetric_adAccountId_date_idx", "DailyAdAccountMetric", ["adAccountId", "date"], unique=False
    )
    op.create_index(
        "DailyAdAccountMetric_organizationId_adAccountId_date_key",
        "DailyAdAccountMetric",
        ["organizationId", "adAccountId", "date"],
        unique=True,
    )
    op.create_index(
        "DailyAdAccountMetric_organizationId_date_idx", "DailyAdAccountMetric", ["organizationId", "date"], unique=False
    )
    op.create_table(
        "InAppNotification",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("priority", sa.Text(), server_default=sa.text("'normal'"), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("actionUrl", sa.Text(), nullable=True),
        sa.Column("metadata", postgresql.JSONB(), nullable=True),
        sa.Column("readAt", sa.TIMESTAMP(timezone=True), nullable=True),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="InAppNotification_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["userId"], ["User.id"], name="InAppNotification_userId_fkey", onupdate="CASCADE", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="InAppNotification_pkey"),
    )
    op.create_index("InAppNotification_organizationId_idx", "InAppNotification", ["organizationId"], unique=False)
    op.create_index("InAppNotification_userId_status_idx", "InAppNotification", ["userId", "status"], unique=False)
    op.create_table(
        "Membership",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("role", _enum("MembershipRole"), server_default=sa.text("'MEMBER'"), nullable=False),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="Membership_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["userId"], ["User.id"], name="Membership_userId_fkey", onupdate="CASCADE", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="Membership_pkey"),
    )
    op.create_index("Membership_organizationId_idx", "Membership", ["organizationId"], unique=False)
    op.create_index("Membership_userId_organizationId_key", "Membership", ["userId", "organizationId"], unique=True)
    op.create_table(
        "Session",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("sessionToken", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("expires", sa.TIMESTAMP(timezone=True), nullable=False),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["userId"], ["User.id"], name="Session_userId_fkey", onupdate="CASCADE", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="Session_pkey"),
    )
    op.create_index("Session_sessionToken_key", "Session", ["sessionToken"], unique=True)
    op.create_index("Session_userId_idx", "Session", ["userId"], unique=False)
    op.create_table(
        "TrackingEvent",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("siteId", sa.Text(), nullable=False),
        sa.Column("eventId", sa.Text(), nullable=False),
        sa.Column("type", _enum("EventType"), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("occurredAt", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("anonId", sa.Text(), nullable=False),
        sa.Column("sessionId", sa.Text(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("referrer", sa.Text(), nullable=True),
        sa.Column("utmSource", sa.Text(), nullable=True),
        sa.Column("utmMedium", sa.Text(), nullable=True),
        sa.Column("utmCampaign", sa.Text(), nullable=True),
        sa.Column("utmTerm", sa.Text(), nullable=True),
        sa.Column("utmContent", sa.Text(), nullable=True),
        sa.Column("gclid", sa.Text(), nullable=True),
        sa.Column("fbclid", sa.Text(), nullable=True),
        sa.Column("ttclid", sa.Text(), nullable=True),
        sa.Column("valueMicros", sa.BigInteger(), nullable=True),
        sa.Column("properties", postgresql.JSONB(), nullable=True),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["siteId"], ["TrackingSite.id"], name="TrackingEvent_siteId_fkey", onupdate="CASCADE", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="TrackingEvent_pkey"),
    )
    op.create_index(
        "TrackingEvent_siteId_anonId_occurredAt_idx", "TrackingEvent", ["siteId", "anonId", "occurredAt"], unique=False
    )
    op.create_index("TrackingEvent_siteId_eventId_key", "TrackingEvent", ["siteId", "eventId"], unique=True)
    op.create_index("TrackingEvent_siteId_occurredAt_idx", "TrackingEvent", ["siteId", "occurredAt"], unique=False)
    op.create_index(
        "TrackingEvent_siteId_type_occurredAt_idx", "TrackingEvent", ["siteId", "type", "occurredAt"], unique=False
    )
    op.create_index(
        "TrackingEvent_siteId_utmSource_occurredAt_idx",
        "TrackingEvent",
        ["siteId", "utmSource", "occurredAt"],
        unique=False,
    )
    op.create_table(
        "Ad",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("campaignId", sa.Text(), nullable=False),
        sa.Column("externalId", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=True),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["campaignId"], ["Campaign.id"], name="Ad_campaignId_fkey", onupdate="CASCADE", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="Ad_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="Ad_pkey"),
    )
    op.create_index("Ad_campaignId_externalId_key", "Ad", ["campaignId", "externalId"], unique=True)
    op.create_index("Ad_organizationId_idx", "Ad", ["organizationId"], unique=False)
    op.create_table(
        "DailyCampaignMetric",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("campaignId", sa.Text(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("impressions", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("clicks", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("spendMicros", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("conversions", sa.Double(), server_default=sa.text("0"), nullable=False),
        sa.Column("revenueMicros", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["campaignId"],
            ["Campaign.id"],
            name="DailyCampaignMetric_campaignId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="DailyCampaignMetric_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="DailyCampaignMetric_pkey"),
    )
    op.create_index(
        "DailyCampaignMetric_campaignId_date_idx", "DailyCampaignMetric", ["campaignId", "date"], unique=False
    )
    op.create_index(
        "DailyCampaignMetric_organizationId_campaignId_date_key",
        "DailyCampaignMetric",
        ["organizationId", "campaignId", "date"],
        unique=True,
    )
    op.create_index(
        "DailyCampaignMetric_organizationId_date_idx", "DailyCampaignMetric", ["organizationId", "date"], unique=False
    )
    op.create_table(
        "JourneyEvent",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("journeyId", sa.Text(), nullable=False),
        sa.Column("trackingEventId", sa.Text(), nullable=False),
        sa.Column("sequenceNumber", sa.Integer(), nullable=False),
        sa.Column("occurredAt", sa.TIMESTAMP(timezone=True), nullable=False),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["journeyId"], ["Journey.id"], name="JourneyEvent_journeyId_fkey", onupdate="CASCADE", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["trackingEventId"],
            ["TrackingEvent.id"],
            name="JourneyEvent_trackingEventId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="JourneyEvent_pkey"),
    )
    op.create_index(
        "JourneyEvent_journeyId_trackingEventId_key", "JourneyEvent", ["journeyId", "trackingEventId"], unique=True
    )
    op.create_index("JourneyEvent_trackingEventId_idx", "JourneyEvent", ["trackingEventId"], unique=False)
    op.create_table(
        "DailyAdMetric",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("organizationId", sa.Text(), nullable=False),
        sa.Column("adId", sa.Text(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("impressions", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("clicks", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("spendMicros", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("conversions", sa.Double(), server_default=sa.text("0"), nullable=False),
        sa.Column("revenueMicros", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["adId"], ["Ad.id"], name="DailyAdMetric_adId_fkey", onupdate="CASCADE", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["organizationId"],
            ["Organization.id"],
            name="DailyAdMetric_organizationId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="DailyAdMetric_pkey"),
    )
    op.create_index("DailyAdMetric_adId_date_idx", "DailyAdMetric", ["adId", "date"], unique=False)
    op.create_index(
        "DailyAdMetric_organizationId_adId_date_key", "DailyAdMetric", ["organizationId", "adId", "date"], unique=True
    )
    op.create_index("DailyAdMetric_organizationId_date_idx", "DailyAdMetric", ["organizationId", "date"], unique=False)
    op.create_table(
        "TouchPoint",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("siteId", sa.Text(), nullable=False),
        sa.Column("trackingEventId", sa.Text(), nullable=True),
        sa.Column("anonId", sa.Text(), nullable=False),
        sa.Column("sessionId", sa.Text(), nullable=True),
        sa.Column("occurredAt", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("gclid", sa.Text(), nullable=True),
        sa.Column("fbclid", sa.Text(), nullable=True),
        sa.Column("ttclid", sa.Text(), nullable=True),
        sa.Column("utmSource", sa.Text(), nullable=True),
        sa.Column("utmMedium", sa.Text(), nullable=True),
        sa.Column("utmCampaign", sa.Text(), nullable=True),
        sa.Column("platformCode", _enum("PlatformCode"), nullable=True),
        sa.Column("campaignId", sa.Text(), nullable=True),
        sa.Column("adId", sa.Text(), nullable=True),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["adId"], ["Ad.id"], name="TouchPoint_adId_fkey", onupdate="CASCADE", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["campaignId"], ["Campaign.id"], name="TouchPoint_campaignId_fkey", onupdate="CASCADE", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["siteId"], ["TrackingSite.id"], name="TouchPoint_siteId_fkey", onupdate="CASCADE", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["trackingEventId"],
            ["TrackingEvent.id"],
            name="TouchPoint_trackingEventId_fkey",
            onupdate="CASCADE",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="TouchPoint_pkey"),
    )
    op.create_index(
        "TouchPoint_siteId_anonId_occurredAt_idx", "TouchPoint", ["siteId", "anonId", "occurredAt"], unique=False
    )
    op.create_index("TouchPoint_siteId_fbclid_idx", "TouchPoint", ["siteId", "fbclid"], unique=False)
    op.create_index("TouchPoint_siteId_gclid_idx", "TouchPoint", ["siteId", "gclid"], unique=False)
    op.create_index("TouchPoint_siteId_ttclid_idx", "TouchPoint", ["siteId", "ttclid"], unique=False)
    op.create_index("TouchPoint_trackingEventId_idx", "TouchPoint", ["trackingEventId"], unique=False)
    op.create_table(
        "AttributionLink",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("conversionId", sa.Text(), nullable=False),
        sa.Column("touchPointId", sa.Text(), nullable=False),
        sa.Column("model", _enum("AttributionModel"), nullable=False),
        sa.Column("weight", sa.Double(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("touchPointCount", sa.Integer(), nullable=False),
        *_audit(),
        sa.ForeignKeyConstraint(
            ["conversionId"],
            ["TrackingEvent.id"],
            name="AttributionLink_conversionId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["touchPointId"],
            ["TouchPoint.id"],
            name="AttributionLink_touchPointId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="AttributionLink_pkey"),
    )
    op.create_index(
        "AttributionLink_conversionId_touchPointId_model_key",
        "AttributionLink",
        ["conversionId", "touchPointId", "model"],
        unique=True,
    )
    op.create_index("AttributionLink_touchPointId_idx", "AttributionLink", ["touchPointId"], unique=False)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)  # its indexes and constraints go with it
    bind = op.get_bind()
    for name in reversed(ENUM_TYPES):
        postgresql.ENUM(name=name).drop(bind, checkfirst=False)
