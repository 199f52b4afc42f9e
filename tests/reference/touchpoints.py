"""Reference touchpoint extraction, written from docs/touchpoints.md (plain Python, slow and obvious).

Sessions, journeys and sources come from the journeys reference (tests/reference/journeys.py), which
docs/touchpoints.md builds on. Events are dicts; times are int microseconds.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from tests.reference.journeys import KEY_ORDER, build_journeys_reference, stable_id, touch_source

Row = dict[str, Any]

PARAMETERS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "gclid", "fbclid", "ttclid")
PROPERTY_KEYS = {
    "utm_source": ("utm_source", "utmSource"),
    "utm_medium": ("utm_medium", "utmMedium"),
    "utm_campaign": ("utm_campaign", "utmCampaign"),
    "utm_term": ("utm_term", "utmTerm"),
    "utm_content": ("utm_content", "utmContent"),
    "gclid": ("gclid",),
    "fbclid": ("fbclid",),
    "ttclid": ("ttclid",),
}
PLATFORMS = {"gclid": "GOOGLE_ADS", "fbclid": "META", "ttclid": "TIKTOK"}
BAD_PROPERTIES = "unparseable properties"


def parse_properties(text: str | None) -> tuple[bool, Any]:
    """(parseable, document); a null ``properties`` is parseable and empty."""
    if text is None:
        return True, None
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def property_value(document: Any, key: str) -> str | None:
    """§1 step 2: a string as is, another scalar as its JSON text, null and "" absent."""
    if not isinstance(document, dict) or key not in document:
        return None
    value = document[key]
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def percent_decode(value: str) -> str:
    raw = urllib.parse.unquote_to_bytes(value.replace("+", " "))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return value


def query_value(url: str | None, name: str) -> str | None:
    """§1 step 3: the first ``name=value`` pair of the query string (after the first ``?``, before ``#``)."""
    if url is None or "?" not in url:
        return None
    query = url.split("?", 1)[1].split("#", 1)[0]
    for pair in query.split("&"):
        if "=" not in pair:
            continue
        key, value = pair.split("=", 1)
        if key == name:
            return percent_decode(value) or None
    return None


def resolve(event: Row, document: Any) -> Row:
    page = event.get("url")
    if page is None:
        page = property_value(document, "url") or property_value(document, "pageUrl")
    out = {k: v for k, v in event.items() if k not in ("properties", "url")}
    for name in PARAMETERS:
        value = event.get(name)
        if value is None:
            for key in PROPERTY_KEYS[name]:
                value = property_value(document, key)
                if value is not None:
                    break
        if value is None:
            value = query_value(page, name)
        out[name] = value
    return out


def _unique(matches: set[tuple]) -> tuple | None:
    return next(iter(matches)) if len(matches) == 1 else None


def resolve_campaign_and_ad(tp: Row, campaigns: list[Row], ads: list[Row], by_org: tuple[bool, bool]) -> None:
    """§4: unique matches by external id, within the platform when the touchpoint has one."""
    org_c, org_a = by_org
    platform = tp["platform_code"]

    def same_org(row: Row, use: bool) -> bool:
        return not use or (
            row.get("organization_id") is not None and row.get("organization_id") == tp.get("organization_id")
        )

    campaign = None
    if tp["utm_campaign"] is not None:
        found = {
            (c["campaign_id"],)
            for c in campaigns
            if c["external_id"] == tp["utm_campaign"]
            and same_org(c, org_c)
            and (platform is None or c.get("platform_code") == platform)
        }
        hit = _unique(found)
        campaign = None if hit is None else hit[0]
    ad = None
    if tp["utm_content"] is not None and ads:
        platform_of = {}
        for c in campaigns:
            platform_of.setdefault(c["campaign_id"], c.get("platform_code"))
        candidates = [a for a in ads if a["external_id"] == tp["utm_content"]]
        if campaign is not None:
            hit = _unique({(a["ad_id"], a["campaign_id"]) for a in candidates if a["campaign_id"] == campaign})
        elif platform is not None:
            pool = [a for a in candidates if same_org(a, org_a) and platform_of.get(a["campaign_id"]) == platform]
            hit = _unique({(a["ad_id"],) for a in pool})
            hit = None if hit is None else next((a["ad_id"], a["campaign_id"]) for a in pool if a["ad_id"] == hit[0])
        else:
            pool = [a for a in candidates if same_org(a, org_a)]
            hit = _unique({(a["ad_id"],) for a in pool})
            hit = None if hit is None else next((a["ad_id"], a["campaign_id"]) for a in pool if a["ad_id"] == hit[0])
        if hit is not None:
            ad = hit[0]
            if campaign is None:
                campaign = hit[1]
    tp["campaign_id"] = campaign
    tp["ad_id"] = ad


def extract_touchpoints_reference(
    events: list[Row],
    *,
    session_timeout_us: int = 30 * 60 * 1_000_000,
    group_by: tuple[str, ...] = ("anon_id",),
    campaigns: list[Row] | None = None,
    ads: list[Row] | None = None,
    by_org: tuple[bool, bool] = (False, False),
) -> tuple[list[Row], list[Row]]:
    """(touchpoints, quarantined) of docs/touchpoints.md; invalid rows other than properties raise."""
    resolved, quarantined = [], []
    for event in events:
        ok, document = parse_properties(event.get("properties"))
        if not ok:
            quarantined.append({**event, "reason": BAD_PROPERTIES})
            continue
        resolved.append(resolve(event, document))
    _, journey_events, session_of = build_journeys_reference(
        resolved, session_timeout_us=session_timeout_us, group_by=group_by
    )
    by_id = {e["event_id"]: e for e in resolved}
    key_columns = [c for c in KEY_ORDER if c in group_by]
    touchpoints: list[Row] = []
    seen: set[tuple] = set()  # (journey, session, source)
    rank: dict[tuple, int] = {}  # (group, session, source) -> touchpoints so far
    for je in journey_events:  # journeys in time order within a group, events in sequence order
        event = by_id[je["event_id"]]
        source = touch_source(event)
        if source is None:
            continue
        session = session_of[event["event_id"]]
        if (je["journey_id"], session, source) in seen:
            continue
        seen.add((je["journey_id"], session, source))
        group = [event.get(c) for c in key_columns]
        k = rank.get((tuple(group), session, source), 0) + 1
        rank[(tuple(group), session, source)] = k
        tp = {c: event.get(c) for c in key_columns}
        tp |= {
            "touchpoint_id": stable_id("tp", [*group, session, *source, str(k)]),
            "session_id": session,
            "journey_id": je["journey_id"],
            "occurred_at": event["occurred_at"],
            "event_id": event["event_id"],
            **{p: event[p] for p in PARAMETERS},
            "platform_code": next((PLATFORMS[c] for c in PLATFORMS if event[c] is not None), None),
        }
        resolve_campaign_and_ad(tp, campaigns or [], ads or [], by_org)
        touchpoints.append(tp)
    return touchpoints, quarantined
