"""A small, explicit Optiq data set for the service tests, and a Polars recomputation of the metrics.

Two organizations (``orgA``, ``orgB``) with ad accounts in two currencies and time zones, campaigns,
ads, daily metrics at the three levels (account rows carry 7 extra micros of spend and campaign rows 3
extra clicks, so a report reading the wrong table is caught), conversions, touchpoints (resolved to
ads, to campaigns only, or organic) and LAST_TOUCH / LINEAR links with dyadic weights (exact sums).
``orgB`` has a touchpoint pointing at one of ``orgA``'s ads: it must never count for ``orgA``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl
from sqlalchemy import create_engine, pool

from optiq_engine.channels import derive_channels
from optiq_engine.io import db, schema

DAY0 = date(2024, 3, 1)
DAYS = 14  # 2024-03-01 .. 2024-03-14
PLATFORMS = [("plt_g", "GOOGLE_ADS", "Google Ads"), ("plt_m", "META", "Meta"), ("plt_t", "TIKTOK", "TikTok")]


@dataclass
class Dataset:
    rows: dict[str, list[dict]]

    def frame(self, table: str) -> pl.DataFrame:
        return pl.DataFrame(self.rows[table], infer_schema_length=None)


def _org_rows(org: str, rng: random.Random, accounts: list[tuple[str, str, str, str]]) -> dict[str, list[dict]]:
    """Rows of one organization; ``accounts``: (id, platform id, currency, timezone)."""
    rows: dict[str, list[dict]] = {
        k: []
        for k in (
            "AdAccount",
            "Campaign",
            "Ad",
            "DailyAdMetric",
            "DailyCampaignMetric",
            "DailyAdAccountMetric",
            "TrackingSite",
            "TrackingEvent",
            "TouchPoint",
            "AttributionLink",
        )
    }
    rows["Organization"] = [{"id": org, "name": f"Org {org}", "slug": org}]
    ads: list[tuple[str, str, str]] = []  # ad, campaign, account
    for acc, plat, currency, tz in accounts:
        rows["AdAccount"].append(
            {
                "id": acc,
                "organizationId": org,
                "platformId": plat,
                "externalId": f"x{acc}",
                "name": f"Account {acc}",
                "currency": currency,
                "timezone": tz,
            }
        )
        for c in range(2):
            cmp = f"{acc}_c{c}"
            rows["Campaign"].append(
                {
                    "id": cmp,
                    "organizationId": org,
                    "adAccountId": acc,
                    "externalId": f"x{cmp}",
                    "name": f"Campaign {cmp}",
                }
            )
            for k in range(2 if c == 0 else 1):
                ad = f"{cmp}_ad{k}"
                rows["Ad"].append(
                    {"id": ad, "organizationId": org, "campaignId": cmp, "externalId": f"x{ad}", "name": f"Ad {ad}"}
                )
                ads.append((ad, cmp, acc))
    by_campaign: dict[tuple[str, date], list[int]] = {}
    for i, (ad, cmp, _acc) in enumerate(ads):
        for d in range(DAYS):
            day = DAY0 + timedelta(days=d)
            if i == 0 and d == 9:  # a dark day: every denominator zero
                imp = clk = spend = 0
            else:
                imp = rng.randint(500, 5000)
                clk = rng.randint(0, imp // 20)
                spend = clk * rng.randint(100_000, 900_000) + rng.randint(0, 999)
            rows["DailyAdMetric"].append(
                {
                    "id": f"m_{ad}_{d}",
                    "organizationId": org,
                    "adId": ad,
                    "date": day,
                    "impressions": imp,
                    "clicks": clk,
                    "spendMicros": spend,
                    "conversions": 0.5,
                    "revenueMicros": 1,
                }
            )
            acc_sum = by_campaign.setdefault((cmp, day), [0, 0, 0])
            acc_sum[0] += imp
            acc_sum[1] += clk
            acc_sum[2] += spend
    by_account: dict[tuple[str, date], list[int]] = {}
    campaign_account = {c["id"]: c["adAccountId"] for c in rows["Campaign"]}
    for (cmp, day), (imp, clk, spend) in sorted(by_campaign.items()):
        clk += 3  # campaign-level rows differ from the sum of their ads
        rows["DailyCampaignMetric"].append(
            {
                "id": f"m_{cmp}_{day}",
                "organizationId": org,
                "campaignId": cmp,
                "date": day,
                "impressions": imp,
                "clicks": clk,
                "spendMicros": spend,
            }
        )
        s = by_account.setdefault((campaign_account[cmp], day), [0, 0, 0])
        s[0], s[1], s[2] = s[0] + imp, s[1] + clk, s[2] + spend
    for (acc, day), (imp, clk, spend) in sorted(by_account.items()):
        rows["DailyAdAccountMetric"].append(
            {
                "id": f"m_{acc}_{day}",
                "organizationId": org,
                "adAccountId": acc,
                "date": day,
                "impressions": imp,
                "clicks": clk,
                "spendMicros": spend + 7,
            }
        )
    site = f"site_{org}"
    rows["TrackingSite"].append(
        {"id": site, "organizationId": org, "name": site, "domain": f"{org}.example", "publicKey": f"pk_{org}"}
    )
    utms = [
        (None, None),
        ("google", "cpc"),
        ("facebook", "paid_social"),
        ("newsletter", "email"),
        (" Google ", "Organic"),
        ("foo", "bar"),
    ]
    n_tp = 0
    for n in range(60):
        # Conversions from 2 days before the data to 1 day after it (time-zone edges and the empty tail).
        at = datetime.combine(DAY0, datetime.min.time(), tzinfo=UTC) + timedelta(
            minutes=rng.randint(-2 * 1440, (DAYS + 1) * 1440)
        )
        conv = f"{org}_cv{n}"
        value = rng.choice([None, 4_000_000, 10_000_000, 25_000_000, 123_456_000])
        rows["TrackingEvent"].append(
            {
                "id": conv,
                "siteId": site,
                "eventId": conv,
                "type": "CONVERSION",
                "occurredAt": at,
                "anonId": f"u{n}",
                "valueMicros": value,
                "name": "purchase",
            }
        )
        touches = rng.choice([1, 2, 4])
        for pos in range(1, touches + 1):
            tp = f"{org}_tp{n_tp}"
            n_tp += 1
            kind = rng.random()
            ad_id = cmp_id = plat_code = gclid = fbclid = None
            if kind < 0.55:
                ad_id, cmp_id, acc = rng.choice(ads)
                if rng.random() < 0.3:
                    ad_id = None  # resolved to the campaign only
                plat_code = {p[0]: p[1] for p in PLATFORMS}[next(a[1] for a in accounts if a[0] == acc)]
                gclid = f"g{tp}" if plat_code == "GOOGLE_ADS" else None
                fbclid = f"f{tp}" if plat_code == "META" else None
            elif kind < 0.65:
                plat_code = "TIKTOK"  # a platform touch with no resolved campaign
            source, medium = rng.choice(utms)
            rows["TouchPoint"].append(
                {
                    "id": tp,
                    "siteId": site,
                    "anonId": f"u{n}",
                    "occurredAt": at - timedelta(hours=touches - pos + 1),
                    "gclid": gclid,
                    "fbclid": fbclid,
                    "utmSource": source,
                    "utmMedium": medium,
                    "platformCode": plat_code,
                    "campaignId": cmp_id,
                    "adId": ad_id,
                }
            )
            rows["AttributionLink"].append(
                {
                    "id": f"l_{tp}_lin",
                    "conversionId": conv,
                    "touchPointId": tp,
                    "model": "LINEAR",
                    "weight": 1.0 / touches,
                    "position": pos,
                    "touchPointCount": touches,
                }
            )
            if pos == touches:
                rows["AttributionLink"].append(
                    {
                        "id": f"l_{tp}_last",
                        "conversionId": conv,
                        "touchPointId": tp,
                        "model": "LAST_TOUCH",
                        "weight": 1.0,
                        "position": pos,
                        "touchPointCount": touches,
                    }
                )
    return rows


def no_campaign_rows() -> dict[str, list[dict]]:
    """orgN: tracking only (no ad account, no spend); three conversions of 5 USD from paid-search UTMs."""
    org, t = "orgN", datetime(2024, 3, 8, 12, tzinfo=UTC)
    rows: dict[str, list[dict]] = {
        "Organization": [{"id": org, "name": "No campaigns", "slug": org}],
        "TrackingSite": [
            {"id": "siteN", "organizationId": org, "name": "n", "domain": "n.example", "publicKey": "pk_n"}
        ],
        "TrackingEvent": [],
        "TouchPoint": [],
        "AttributionLink": [],
    }
    for n in range(3):
        rows["TrackingEvent"].append(
            {
                "id": f"n_cv{n}",
                "siteId": "siteN",
                "eventId": f"n{n}",
                "type": "CONVERSION",
                "occurredAt": t,
                "anonId": f"n{n}",
                "valueMicros": 5_000_000,
            }
        )
        rows["TouchPoint"].append(
            {
                "id": f"n_tp{n}",
                "siteId": "siteN",
                "anonId": f"n{n}",
                "occurredAt": t - timedelta(hours=1),
                "utmSource": "google",
                "utmMedium": "cpc",
            }
        )
        rows["AttributionLink"].append(
            {
                "id": f"n_l{n}",
                "conversionId": f"n_cv{n}",
                "touchPointId": f"n_tp{n}",
                "model": "LAST_TOUCH",
                "weight": 1.0,
                "position": 1,
                "touchPointCount": 1,
            }
        )
    return rows


def build() -> Dataset:
    """The data set: orgA (USD/UTC Google account, EUR/Asia-Tokyo Meta account, USD/America-New_York Google account), orgB."""
    rng = random.Random(20240301)
    a = _org_rows(
        "orgA",
        rng,
        [
            ("accA1", "plt_g", "USD", "UTC"),
            ("accA2", "plt_m", "EUR", "Asia/Tokyo"),
            ("accA3", "plt_g", "USD", "America/New_York"),
        ],
    )
    b = _org_rows("orgB", rng, [("accB1", "plt_g", "USD", "UTC")])
    # orgB's touchpoint that points at orgA's ad and campaign: a foreign reference, never counted for orgA.
    b["TouchPoint"][0]["adId"], b["TouchPoint"][0]["campaignId"] = "accA1_c0_ad0", "accA1_c0"
    rows = {"Platform": [{"id": i, "code": c, "name": n} for i, c, n in PLATFORMS]}
    for part in (a, b):
        for table, values in part.items():
            rows.setdefault(table, []).extend(values)
    return Dataset(rows)


def insert(url: str, dataset: Dataset) -> None:
    """Create the schema and insert the data set (SQLAlchemy Core, one transaction)."""
    db.upgrade(url)
    engine = create_engine(db.normalise_url(url), poolclass=pool.NullPool)
    with engine.begin() as conn:
        for table in schema.TABLE_NAMES:
            values = dataset.rows.get(table)
            if values:
                conn.execute(schema.metadata.tables[table].insert(), values)
    engine.dispose()


# --- the Polars recomputation ----------------------------------------------------------------------------
_SPEND_TABLE = {
    1: ("DailyAdAccountMetric", "adAccountId"),
    2: ("DailyCampaignMetric", "campaignId"),
    3: ("DailyAdMetric", "adId"),
}


def _entities(ds: Dataset, org: str) -> pl.DataFrame:
    """ad / campaign / account / platform / currency / timezone of every ad of ``org`` (left-joined upwards)."""
    acc = (
        ds.frame("AdAccount")
        .filter(pl.col("organizationId") == org)
        .join(
            ds.frame("Platform").select(pl.col("id").alias("platformId"), pl.col("code").alias("platform")),
            on="platformId",
        )
        .select(pl.col("id").alias("account"), "platform", "currency", "timezone")
    )
    cmp = (
        ds.frame("Campaign")
        .filter(pl.col("organizationId") == org)
        .select(pl.col("id").alias("campaign"), pl.col("adAccountId").alias("account"))
    )
    return cmp.join(acc, on="account")


def credit_rows(ds: Dataset, org: str, model: str, *, rules=None) -> pl.DataFrame:
    """One row per link of ``org``'s conversions: keys, local day, currency, weight, weighted value."""
    sites = ds.frame("TrackingSite").filter(pl.col("organizationId") == org)["id"]
    ev = ds.frame("TrackingEvent").filter(pl.col("siteId").is_in(sites.implode()) & (pl.col("type") == "CONVERSION"))
    tp = ds.frame("TouchPoint").filter(pl.col("siteId").is_in(sites.implode()))
    ads = (
        ds.frame("Ad")
        .filter(pl.col("organizationId") == org)
        .select(pl.col("id").alias("adId"), pl.col("campaignId").alias("adCampaign"))
    )
    links = ds.frame("AttributionLink").filter(pl.col("model") == model)
    cmp = _entities(ds, org)
    frame = (
        links.join(ev.select(pl.col("id").alias("conversionId"), "occurredAt", "valueMicros"), on="conversionId")
        .join(tp.rename({"id": "touchPointId"}), on="touchPointId")
        .join(ads, on="adId", how="left")
        .with_columns(
            pl.when(pl.col("adCampaign").is_not_null()).then("adId").alias("ad"),
            pl.coalesce("campaignId", "adCampaign").alias("campaign"),
        )
        .join(cmp, on="campaign", how="left")
        .with_columns(
            pl.when(pl.col("account").is_not_null()).then("campaign").alias("campaign"),
            pl.coalesce("platform", "platformCode").alias("platform"),
            pl.col("timezone").fill_null("UTC"),
        )
    )
    frame = frame.with_columns(
        derive_channels(frame.rename({"utmSource": "utm_source", "utmMedium": "utm_medium"}), rules).alias("channel")
    )
    days = []
    for (tz,), part in frame.group_by("timezone"):
        days.append(part.with_columns(pl.col("occurredAt").dt.convert_time_zone(tz).dt.date().alias("day")))
    frame = pl.concat(days)
    return frame.with_columns(
        pl.col("weight").alias("w"), (pl.col("weight") * pl.col("valueMicros").cast(pl.Float64)).alias("r")
    )


def spend_rows(ds: Dataset, org: str, level: int) -> pl.DataFrame:
    table, col = _SPEND_TABLE[level]
    m = ds.frame(table).filter(pl.col("organizationId") == org).rename({"date": "day"})
    cmp = _entities(ds, org)
    if level == 3:
        ads = ds.frame("Ad").select(pl.col("id").alias("adId"), pl.col("campaignId").alias("campaign"))
        m = m.join(ads, on="adId").rename({"adId": "ad"}).join(cmp, on="campaign")
    elif level == 2:
        m = m.rename({"campaignId": "campaign"}).join(cmp, on="campaign")
    else:
        m = m.rename({"adAccountId": "account"}).join(
            cmp.select("account", "platform", "currency").unique(), on="account"
        )
    return m


#: The click id each platform's clicks carry (docs/touchpoints.md: platform_code from the first click id).
PLATFORM_CLICK_ID = {"GOOGLE_ADS": "gclid", "META": "fbclid", "TIKTOK": "ttclid"}


def spend_channel(platform: str, rules=None) -> str | None:
    """The channel a platform's spend goes to, from the definition (docs/service.md), not from the SQL: the
    first rule a touch with only the platform's click id (no UTM source or medium) satisfies, i.e. a rule
    on that click id alone; None (unmapped) when there is none."""
    from optiq_engine.channels import DEFAULT_CHANNEL_RULES

    for rule in (rules or DEFAULT_CHANNEL_RULES).rules:
        if rule.click_id == PLATFORM_CLICK_ID[platform] and rule.source is None and rule.medium is None:
            return rule.channel
    return None


_KEYS = {
    "ad": "ad",
    "campaign": "campaign",
    "ad_account": "account",
    "platform": "platform",
    "channel": "channel",
    "organization": None,
}


def reference(
    ds: Dataset, org: str, *, start: date, end: date, model: str, grain: str, level: int, rules=None
) -> pl.DataFrame:
    """Spend, impressions, clicks, conversions, revenue and ratios per key for [start, end] (no comparison).

    The credit that resolves to no key of the grain is a row with a null key (last), except at grain ``ad``;
    its spend, impressions and clicks are null, as are those of a platform the organization has no ad
    account on. Any other key without spend rows has zero spend. At grain ``channel`` spend goes to its
    platform's channel (:func:`spend_channel`), the unmapped spend to a null key; a channel no platform of
    the organization maps to has null spend."""
    key = _KEYS[grain]
    cr = credit_rows(ds, org, model, rules=rules).filter(pl.col("day").is_between(start, end))
    if key is None:
        cr = cr.with_columns(pl.lit(org).alias("key"))
    else:
        cr = cr.filter(pl.col(key).is_not_null() | (grain != "ad")).with_columns(pl.col(key).alias("key"))
    credit = cr.group_by("key").agg(pl.col("w").sum().alias("conversions"), pl.col("r").sum().alias("rev"))
    platforms = _entities(ds, org)["platform"].unique()
    sp = spend_rows(ds, org, level).filter(pl.col("day").is_between(start, end))
    if grain == "channel":
        mapped = {p: spend_channel(p, rules) for p in PLATFORM_CLICK_ID}
        sp = sp.with_columns(pl.col("platform").replace_strict(mapped, return_dtype=pl.String).alias("channel"))
    sp = sp.with_columns((pl.lit(org) if key is None else pl.col(key)).alias("key"))
    spend = sp.group_by("key").agg(
        pl.col("spendMicros").sum().alias("spend_micros"), pl.col("impressions").sum(), pl.col("clicks").sum()
    )
    known = pl.col("key").is_not_null()
    if grain == "platform":
        known = pl.col("key").is_in(platforms.implode())
    elif grain == "channel":
        channels = [spend_channel(p, rules) for p in platforms]
        known = pl.col("key").is_in(channels) | pl.col("spend_micros").is_not_null()
    out = spend.join(credit, on="key", how="full", coalesce=True).with_columns(
        pl.when(known).then(pl.col("spend_micros", "impressions", "clicks").fill_null(0)),
        pl.col("conversions", "rev").fill_null(0),
    )

    def rnd(x: pl.Expr) -> pl.Expr:  # half away from zero, as Postgres numeric round
        return (x.abs() + 0.5).floor().cast(pl.Int64) * x.sign().cast(pl.Int64)

    out = out.with_columns(rnd(pl.col("rev")).alias("revenue_micros"))
    nz = lambda c: pl.when(pl.col(c) != 0).then(pl.col(c).cast(pl.Float64))  # noqa: E731
    return (
        out.with_columns(
            (pl.col("revenue_micros") / nz("spend_micros")).alias("roas"),
            rnd(pl.col("spend_micros") / nz("conversions")).alias("cpa_micros"),
            rnd(pl.col("spend_micros") / nz("clicks")).alias("cpc_micros"),
            (pl.col("clicks") / nz("impressions")).alias("ctr"),
            (pl.col("conversions") / nz("clicks")).alias("conversion_rate"),
        )
        .drop("rev")
        .sort("key", nulls_last=True)
    )
