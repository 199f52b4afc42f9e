"""The enum types of the Optiq database and their values, in declaration order (``seed/optiq-schema.md``).

Enum type names are the PascalCase Prisma enum names, values SCREAMING_SNAKE_CASE; :mod:`.schema` builds
the Postgres enum types from :data:`ENUM_TYPES`, and the service validates requests against these tuples.
"""

from __future__ import annotations

__all__ = [
    "MEMBERSHIP_ROLES",
    "SUBSCRIPTION_PLANS",
    "SUBSCRIPTION_STATUSES",
    "PLATFORM_CODES",
    "AD_ACCOUNT_STATUSES",
    "EVENT_TYPES",
    "ATTRIBUTION_MODELS",
    "JOURNEY_STATUSES",
    "ALERT_TYPES",
    "ALERT_SEVERITIES",
    "ALERT_RULE_STATUSES",
    "ALERT_EVENT_STATUSES",
    "INGESTION_JOB_TYPES",
    "INGESTION_JOB_STATUSES",
    "ENUM_TYPES",
]

MEMBERSHIP_ROLES: tuple[str, ...] = ("OWNER", "ADMIN", "MEMBER", "VIEWER")
SUBSCRIPTION_PLANS: tuple[str, ...] = ("FREE", "STARTER", "PROFESSIONAL", "ENTERPRISE")
SUBSCRIPTION_STATUSES: tuple[str, ...] = ("ACTIVE", "TRIALING", "PAST_DUE", "CANCELED", "PAUSED")
PLATFORM_CODES: tuple[str, ...] = ("GOOGLE_ADS", "META", "TIKTOK")
AD_ACCOUNT_STATUSES: tuple[str, ...] = ("ACTIVE", "PAUSED", "ARCHIVED", "DELETED")
EVENT_TYPES: tuple[str, ...] = ("PAGE_VIEW", "CONVERSION", "CUSTOM")
ATTRIBUTION_MODELS: tuple[str, ...] = (
    "FIRST_TOUCH",
    "LAST_TOUCH",
    "LAST_NON_DIRECT",
    "LINEAR",
    "POSITION_BASED",
    "TIME_DECAY",
    "MARKOV",
    "SHAPLEY",
    "DATA_DRIVEN",
)
JOURNEY_STATUSES: tuple[str, ...] = ("IN_PROGRESS", "CONVERTED", "ABANDONED")
ALERT_TYPES: tuple[str, ...] = (
    "SPEND_THRESHOLD",
    "CONVERSION_DROP",
    "CPA_SPIKE",
    "ROAS_DROP",
    "CLICK_ANOMALY",
    "CUSTOM",
)
ALERT_SEVERITIES: tuple[str, ...] = ("INFO", "WARNING", "CRITICAL")
ALERT_RULE_STATUSES: tuple[str, ...] = ("ACTIVE", "PAUSED", "ARCHIVED")
ALERT_EVENT_STATUSES: tuple[str, ...] = ("TRIGGERED", "ACKNOWLEDGED", "RESOLVED", "DISMISSED")
INGESTION_JOB_TYPES: tuple[str, ...] = ("DAILY_SYNC", "BACKFILL", "MANUAL")
INGESTION_JOB_STATUSES: tuple[str, ...] = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")

#: Postgres enum type name -> its values, in declaration order.
ENUM_TYPES: dict[str, tuple[str, ...]] = {
    "MembershipRole": MEMBERSHIP_ROLES,
    "SubscriptionPlan": SUBSCRIPTION_PLANS,
    "SubscriptionStatus": SUBSCRIPTION_STATUSES,
    "PlatformCode": PLATFORM_CODES,
    "AdAccountStatus": AD_ACCOUNT_STATUSES,
    "EventType": EVENT_TYPES,
    "AttributionModel": ATTRIBUTION_MODELS,
    "JourneyStatus": JOURNEY_STATUSES,
    "AlertType": ALERT_TYPES,
    "AlertSeverity": ALERT_SEVERITIES,
    "AlertRuleStatus": ALERT_RULE_STATUSES,
    "AlertEventStatus": ALERT_EVENT_STATUSES,
    "IngestionJobType": INGESTION_JOB_TYPES,
    "IngestionJobStatus": INGESTION_JOB_STATUSES,
}
