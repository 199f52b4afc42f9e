"""extract_touchpoints(): tracking events -> TouchPoint rows (``docs/touchpoints.md``).

Data flow: read each marketing parameter from its column, else from the event's ``properties`` JSON, else
from the query string of its page URL (Polars expressions; percent-decoding in
:mod:`optiq_engine.kernels.urls`); then :func:`optiq_engine.journeys.build_journeys`'s own sessionization
and touch deduplication pick the touchpoints (one per (journey, session, source): the touches that
``Journey.touchPointCount`` counts, from the same kernel); then platform, campaign and ad are resolved with
joins and the ids hashed with :mod:`optiq_engine.kernels.stable_id`. There is no loop per row in Python.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from .config import OnInvalid, check_on_invalid
from .errors import InputError, SchemaError
from .frames import normalize_events, to_polars
from .grouping import KEY_COLUMNS, arrow_strings
from .journeys import JourneyResult, SortedTouchpoints, _build_journeys, _fixed_width_strings
from .kernels.stable_id import hex_ids, key_hashes
from .kernels.urls import percent_decode
from .layout import readonly
from .stages import Timed, stage_timer

__all__ = [
    "CLICK_ID_PLATFORMS",
    "MARKETING_PARAMETERS",
    "PROPERTY_KEYS",
    "TOUCHPOINT_ID_PREFIX",
    "TouchpointExtraction",
    "extract_touchpoints",
]

log = logging.getLogger(__name__)

#: Marketing parameters read from events: UTM parameters, then click ids.
MARKETING_PARAMETERS = (
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "gclid",
    "fbclid",
    "ttclid",
)
#: Keys looked up in ``properties`` for each parameter, first non-empty wins.
PROPERTY_KEYS: dict[str, tuple[str, ...]] = {
    "utm_source": ("utm_source", "utmSource"),
    "utm_medium": ("utm_medium", "utmMedium"),
    "utm_campaign": ("utm_campaign", "utmCampaign"),
    "utm_term": ("utm_term", "utmTerm"),
    "utm_content": ("utm_content", "utmContent"),
    "gclid": ("gclid",),
    "fbclid": ("fbclid",),
    "ttclid": ("ttclid",),
}
#: ``properties`` keys holding the page URL when the event has no ``url`` column value.
URL_PROPERTY_KEYS = ("url", "pageUrl")
#: Click id -> the seed's ``PlatformCode`` (first non-null click id in this order decides).
CLICK_ID_PLATFORMS = {"gclid": "GOOGLE_ADS", "fbclid": "META", "ttclid": "TIKTOK"}
#: Engine-extracted touchpoint ids are ``tp_`` + 32 lower-case hex digits (platform ids are CUIDs).
TOUCHPOINT_ID_PREFIX = "tp"
_CLICK_IDS = tuple(CLICK_ID_PLATFORMS)
_UTM = ("utm_source", "utm_medium", "utm_campaign")
_SEP = "\x1f"
_NULL = "\x00"
#: The reason of events whose ``properties`` is not a JSON document.
BAD_PROPERTIES = "unparseable properties"


@dataclass(frozen=True)
class TouchpointExtraction:
    """What :func:`extract_touchpoints` returns.

    Parameters
    ----------
    touchpoints, journeys, events, quarantined
        The fields described under Attributes.
    timings
        Default empty.

    Attributes
    ----------
    touchpoints
        One row per touchpoint (docs/contract.md §1 touchpoints frame plus the seed's TouchPoint columns), columns
        ``touchpoint_id``, [``organization_id``, ``site_id``,] ``anon_id``, ``session_id``, ``journey_id``,
        ``occurred_at``, ``event_id``, ``utm_source``, ``utm_medium``, ``utm_campaign``, ``utm_term``,
        ``utm_content``, ``gclid``, ``fbclid``, ``ttclid``, ``platform_code``, ``campaign_id``, ``ad_id``;
        sorted by group and time.
    journeys
        The sessions and journeys built on the way (:func:`~optiq_engine.journeys.build_journeys` of
        ``events``): ``touchpoint_count`` of a journey is its number of rows in ``touchpoints``.
    events
        The valid events with every marketing parameter resolved (column, else ``properties``, else URL),
        without ``properties`` and ``url``: what ``journeys`` was built from.
    quarantined
        Events set aside with ``on_invalid="quarantine"`` (input columns and ``reason``).
    timings
        Seconds per stage.
    """

    touchpoints: pl.DataFrame
    journeys: JourneyResult
    events: pl.DataFrame
    quarantined: pl.DataFrame
    timings: dict[str, float] = field(default_factory=dict)


def extract_touchpoints(
    events: Any,
    *,
    session_timeout: timedelta = timedelta(minutes=30),
    campaigns: Any | None = None,
    ads: Any | None = None,
    on_invalid: OnInvalid = "raise",
    abandon_after: timedelta = timedelta(days=30),
    as_of: datetime | None = None,
    timezone: str | None = None,
    timestamp_format: str | None = None,
) -> TouchpointExtraction:
    """Marketing touchpoints of tracking events: one per (journey, session, source).

    Parameters
    ----------
    events
        Events frame (polars, pyarrow or pandas), docs/contract.md §1: ``event_id``, ``anon_id``, ``occurred_at``,
        ``type``; optional ``organization_id``, ``site_id``, ``session_id``, ``utm_source``,
        ``utm_medium``, ``utm_campaign``, ``utm_term``, ``utm_content``, ``gclid``, ``fbclid``, ``ttclid``,
        ``value_micros``, ``name``, ``properties`` (JSON text) and ``url`` (the page URL).
    session_timeout
        A gap greater than this starts a new gap session (as in ``build_journeys``).
    campaigns
        Optional ``Campaign`` rows: ``campaign_id``, ``external_id``; optional ``platform_code`` and
        ``organization_id``. Touchpoints whose ``utm_campaign`` equals exactly one campaign's
        ``external_id`` (of their platform, when they have one) get its ``campaign_id``.
    ads
        Optional ``Ad`` rows: ``ad_id``, ``campaign_id``, ``external_id``; optional ``organization_id``.
        Touchpoints whose ``utm_content`` equals exactly one candidate ad's ``external_id`` get its
        ``ad_id`` (and its campaign when none was resolved).
    on_invalid
        ``"raise"`` an :class:`~optiq_engine.errors.InputError` on invalid rows (those of
        ``build_journeys`` and an unparseable ``properties``), or ``"quarantine"`` them.
    abandon_after, as_of
        Passed to the journeys built on the way (:attr:`TouchpointExtraction.journeys`).
    timezone, timestamp_format
        How ``occurred_at`` strings and naive times are read (docs/contract.md §1.2).

    Returns
    -------
    TouchpointExtraction

    Raises
    ------
    ConfigError
        A bad option.
    SchemaError, InputError
        Missing or mistyped columns; invalid rows (unless quarantined); duplicate ``event_id``.

    Notes
    -----
    A touch is an event with a click id or a ``utm_source`` / ``utm_medium``; its source is its first
    click id (``gclid``, ``fbclid``, ``ttclid``) or its (``utm_source``, ``utm_medium``,
    ``utm_campaign``). Within a journey, the first touch of each (session, source) is a touchpoint, so a
    journey's ``touchpoint_count`` is its number of touchpoints. Events without any marketing parameter
    (direct traffic) make no touchpoint. ``touchpoint_id`` is ``stable_id("tp", [*group key, session_id,
    *source, k])`` with ``k`` the touchpoint's rank among those of its (session, source). See
    ``docs/touchpoints.md`` for every rule.

    Examples
    --------
    >>> from datetime import datetime, UTC
    >>> import polars as pl
    >>> import optiq_engine as oq
    >>> events = pl.DataFrame({
    ...     "event_id": ["e1", "e2", "e3"], "anon_id": ["u1", "u1", "u1"],
    ...     "occurred_at": [datetime(2026, 1, 1, 9, m, tzinfo=UTC) for m in (0, 5, 10)],
    ...     "type": ["PAGE_VIEW", "PAGE_VIEW", "CONVERSION"],
    ...     "properties": ['{"gclid": "abc"}', '{"gclid": "abc"}', None],
    ... })
    >>> oq.extract_touchpoints(events).touchpoints.select("event_id", "gclid", "platform_code").rows()
    [('e1', 'abc', 'GOOGLE_ADS')]
    """
    check_on_invalid(on_invalid)
    timings: dict[str, float] = {}
    timed = stage_timer(timings)
    with timed("parameters"):
        frame, bad = _parameters(events, on_invalid)
    result, found = _build_journeys(
        frame,
        session_timeout=session_timeout,
        abandon_after=abandon_after,
        as_of=as_of,
        on_invalid=on_invalid,
        with_touchpoints=True,
        keep=("utm_term", "utm_content"),
        timezone=timezone,
        timestamp_format=timestamp_format,
    )
    assert found is not None
    for k, v in result.timings.items():
        timings[f"journeys: {k}"] = v
    quarantined = result.quarantined
    if bad.height:
        quarantined = pl.concat([bad, quarantined], how="diagonal_relaxed")
    touchpoints = _touchpoints(found, campaigns, ads, timed)
    return TouchpointExtraction(touchpoints, result, found.events, quarantined, timings)


def _parameters(events: Any, on_invalid: OnInvalid) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The events with every marketing parameter resolved, and those set aside for an unparseable
    ``properties`` (with ``on_invalid="raise"``, an :class:`InputError` counting every invalid row instead)."""
    frame = to_polars(events, what="events")
    frame, bad = _split_bad_properties(frame)
    if bad.height and on_invalid == "raise":
        _raise_invalid(frame, bad)
    return resolve_parameters(frame), bad


def _touchpoints(found: SortedTouchpoints, campaigns: Any | None, ads: Any | None, timed: Timed) -> pl.DataFrame:
    """The touchpoint rows of the touchpoints the journeys counted, campaigns and ads resolved, ids hashed."""
    with timed("touchpoints"):
        parts = [c for c in KEY_COLUMNS if c in found.events.columns] + ["anon_id"]
        touchpoints = _touchpoint_rows(found.events, found.rows, parts, found.session_id, found.journey_id)
    with timed("campaigns and ads"):
        touchpoints = _resolve_campaigns(touchpoints, campaigns, ads)
    with timed("ids"):
        return _with_ids(touchpoints, parts)


# --- marketing parameters --------------------------------------------------------------------------


def _properties_text(frame: pl.DataFrame) -> pl.Expr | None:
    if "properties" not in frame.columns:
        return None
    dtype = frame.schema["properties"]
    if dtype == pl.String:
        return pl.col("properties")
    if dtype == pl.Null:
        return pl.col("properties").cast(pl.String)
    if isinstance(dtype, pl.Struct):
        return pl.col("properties").struct.json_encode()
    raise SchemaError(f"events column 'properties' must hold JSON text (or structs), got {dtype}")


def _split_bad_properties(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events with parseable or null ``properties``, the others with ``reason``)."""
    text = _properties_text(frame)
    if text is None or frame.schema["properties"] != pl.String:
        return frame, frame.clear().with_columns(pl.lit(None, pl.String).alias("reason"))
    # A JSON document parses as "$"; the document `null` is the only valid one that matches null.
    bad = text.is_not_null() & text.str.json_path_match("$").is_null() & (text.str.strip_chars() != "null")
    mask = frame.select(bad.alias("bad")).to_series()
    if not mask.any():
        return frame, frame.clear().with_columns(pl.lit(None, pl.String).alias("reason"))
    return frame.filter(~mask), frame.filter(mask).with_columns(pl.lit(BAD_PROPERTIES).alias("reason"))


def _raise_invalid(good: pl.DataFrame, bad: pl.DataFrame) -> None:
    counts = {BAD_PROPERTIES: bad.height}
    others = normalize_events(good, on_invalid="quarantine").quarantined
    if others.height:
        counts |= dict(others.group_by("reason").len().sort("reason").iter_rows())
    examples = bad.head(3).select("event_id", "anon_id", "properties").to_dicts()
    summary = ", ".join(f"{k}: {v}" for k, v in counts.items())
    raise InputError(
        f"{sum(counts.values())} invalid events row(s) ({summary}); examples: {examples}. "
        "Fix the input or pass on_invalid='quarantine' to set them aside.",
        counts,
    )


def _blank_is_null(e: pl.Expr) -> pl.Expr:
    return pl.when(e != "").then(e)


def resolve_parameters(events: Any) -> pl.DataFrame:
    """Every marketing parameter from its column, else ``properties``, else the page URL's query string.

    Parameters
    ----------
    events
        Events with optional ``properties`` (JSON text; unparseable text reads as no properties) and
        ``url`` columns.

    Returns
    -------
    pl.DataFrame
        ``events`` with all of :data:`MARKETING_PARAMETERS` as String columns (null when found nowhere),
        without ``properties`` and ``url``.

    Notes
    -----
    A non-null column value is used as it is (an empty string included). In ``properties`` the keys of
    :data:`PROPERTY_KEYS` are tried in order: a JSON string is taken as is, another scalar as its JSON
    text (``12``, ``true``), JSON ``null`` and ``""`` count as absent. The URL is the ``url`` column, else
    ``properties.url`` / ``properties.pageUrl``; its query string is the text after the first ``?`` up to
    the next ``#``, split at ``&``; the first ``name=value`` pair whose name is exactly the parameter gives
    its value, percent-decoded (``+`` is a space; kept as written if not UTF-8 once decoded); an empty value
    counts as absent.
    """
    frame = to_polars(events, what="events")
    text = _properties_text(frame)
    columns = frame.columns
    n = frame.height
    found: dict[str, pl.Series] = {}  # _prop_<name>, _page_url, _url_<name>
    if text is not None:
        # JSON is parsed only where a key can be: rows whose text holds one of the quoted key names.
        properties = frame.select(text.alias("p")).to_series()
        keys = [*(k for ks in PROPERTY_KEYS.values() for k in ks), *URL_PROPERTY_KEYS]
        rows = np.flatnonzero(properties.str.contains_any([f'"{k}"' for k in keys]).fill_null(False).to_numpy())
        sub = pl.DataFrame({"p": properties.gather(rows)})
        p = pl.col("p")
        values = sub.select(
            *(
                pl.coalesce(*(_blank_is_null(p.str.json_path_match(f"$.{k}")) for k in ks)).alias(f"_prop_{name}")
                for name, ks in PROPERTY_KEYS.items()
            ),
            pl.coalesce(*(_blank_is_null(p.str.json_path_match(f"$.{k}")) for k in URL_PROPERTY_KEYS)).alias(
                "_page_url"
            ),
        )
        found |= {c: _scatter(values.get_column(c), rows, n) for c in values.columns}
    page: pl.Series | None = frame.get_column("url").cast(pl.String) if "url" in columns else None
    if "_page_url" in found:
        page = found.pop("_page_url") if page is None else page.fill_null(found.pop("_page_url"))
    if page is not None:
        # The query string is parsed only where a parameter can be: URLs holding "<name>=".
        rows = np.flatnonzero(
            page.str.contains_any([f"{k}=" for k in MARKETING_PARAMETERS]).fill_null(False).to_numpy()
        )
        # The query string, with a leading "&" so that every pair starts with one.
        query = pl.lit("&") + pl.col("u").str.extract(r"\?([^#]*)", 1)
        raw = pl.DataFrame({"u": page.gather(rows)}).select(
            query.str.extract(f"&{name}=([^&]*)", 1).alias(name) for name in MARKETING_PARAMETERS
        )
        decoded = _percent_decode_columns(raw)
        found |= {f"_url_{k}": _scatter(_blank(decoded.get_column(k)), rows, n) for k in MARKETING_PARAMETERS}
    exprs = []
    for name in MARKETING_PARAMETERS:
        sources = [pl.col(name).cast(pl.String)] if name in columns else []
        sources += [pl.lit(found[c]) for c in (f"_prop_{name}", f"_url_{name}") if c in found]
        exprs.append((pl.coalesce(*sources) if sources else pl.lit(None, pl.String)).alias(name))
    out = frame.with_columns(exprs)
    return out.drop([c for c in ("properties", "url") if c in out.columns])


def _blank(values: pl.Series) -> pl.Series:
    """``""`` as null."""
    return pl.select(_blank_is_null(pl.lit(values))).to_series().alias(values.name)


def _scatter(values: pl.Series, rows: np.ndarray, n: int) -> pl.Series:
    """A String series of ``n`` nulls with ``values`` at ``rows``."""
    out = pl.Series(values.name, [None], dtype=pl.String).extend_constant(None, n - 1) if n else values.clear()
    return out.scatter(rows, values) if len(rows) else out


def _percent_decode_columns(values: pl.DataFrame) -> pl.DataFrame:
    """Every column percent-decoded (:func:`~optiq_engine.kernels.urls.percent_decode`)."""
    import pyarrow as pa

    out = []
    for series in values.iter_columns():
        present = series.drop_nulls()
        if present.len() == 0:
            out.append(series)
            continue
        offsets, data, _ = arrow_strings(present)
        new_offsets, new_data = percent_decode(*readonly(offsets - offsets[0], data[offsets[0] : offsets[-1]]))
        arr = pa.Array.from_buffers(
            pa.large_string(), present.len(), [None, pa.py_buffer(new_offsets), pa.py_buffer(new_data)]
        )
        decoded = pl.Series(series.name, arr, dtype=pl.String)
        mask = series.is_not_null()
        out.append(
            pl.select(pl.when(mask).then(decoded.gather(np.maximum(np.cumsum(mask.to_numpy()) - 1, 0))))
            .to_series()
            .alias(series.name)
        )
    return pl.DataFrame(out)


# --- touchpoints -----------------------------------------------------------------------------------


def _touchpoint_rows(
    ev: pl.DataFrame, rows: np.ndarray, parts: list[str], session_id: pl.Series, journey_id: pl.Series
) -> pl.DataFrame:
    wanted = [*parts, "occurred_at", "event_id", *(c for c in MARKETING_PARAMETERS if c in ev.columns)]
    taken = ev.select(wanted)[rows] if rows.shape[0] else ev.select(wanted).clear()
    platform: pl.Expr = pl.lit(None, pl.String)
    for c in reversed(_CLICK_IDS):
        platform = pl.when(pl.col(c).is_not_null()).then(pl.lit(CLICK_ID_PLATFORMS[c])).otherwise(platform)
    return taken.with_columns(
        [pl.lit(None, pl.String).alias(c) for c in MARKETING_PARAMETERS if c not in taken.columns]
        + [session_id.alias("session_id"), journey_id.alias("journey_id")]
    ).select(
        *parts,
        "session_id",
        "journey_id",
        "occurred_at",
        "event_id",
        *MARKETING_PARAMETERS,
        platform.alias("platform_code"),
    )


def _with_ids(touchpoints: pl.DataFrame, parts: list[str]) -> pl.DataFrame:
    """``touchpoint_id = stable_id("tp", [*group key, session_id, *source, k])`` in front."""
    if touchpoints.height == 0:
        return touchpoints.select(pl.lit(None, pl.String).alias("touchpoint_id"), pl.all())
    kind: pl.Expr = pl.lit("utm")
    for c in reversed(_CLICK_IDS):
        kind = pl.when(pl.col(c).is_not_null()).then(pl.lit(c)).otherwise(kind)
    click = pl.coalesce(*(pl.col(c) for c in _CLICK_IDS))
    keyed = touchpoints.select(
        *(pl.col(c) for c in (*parts, "session_id")),
        kind.alias("_kind"),
        pl.coalesce(click, pl.col("utm_source")).alias("_value"),
        pl.when(click.is_null()).then(pl.col("utm_medium")).alias("_medium"),
        pl.when(click.is_null()).then(pl.col("utm_campaign")).alias("_campaign"),
    )
    fill = [pl.col(c).fill_null(_NULL) for c in (*parts, "session_id")]
    base = keyed.select(
        pl.when(pl.col("_kind") == "utm")
        .then(
            pl.concat_str(
                [*fill, pl.lit("utm"), *(pl.col(c).fill_null(_NULL) for c in ("_value", "_medium", "_campaign"))],
                separator=_SEP,
            )
        )
        .otherwise(pl.concat_str([*fill, pl.col("_kind"), pl.col("_value")], separator=_SEP))
    ).to_series()
    # k: 1 for the first touchpoint of its (session, source), 2 when a conversion ended the journey and
    # the same source came back in the same session, ... (rows come in time order within a group).
    rank = np.ones(base.len(), dtype=np.int64)
    repeated = base.is_duplicated()
    if repeated.any():  # rare: rank only those keys
        mask = repeated.to_numpy()
        rank[mask] = (
            pl.DataFrame({"k": base.filter(repeated)})
            .select(pl.int_range(pl.len()).over("k") + 1)
            .to_series()
            .to_numpy()
        )
    key = pl.select(pl.concat_str([pl.lit(base), pl.lit(pl.Series(rank)).cast(pl.String)], separator=_SEP)).to_series()
    ids = _stable_ids(TOUCHPOINT_ID_PREFIX, key)
    return touchpoints.select(ids.alias("touchpoint_id"), pl.all())


def _stable_ids(prefix: str, key: pl.Series) -> pl.Series:
    """``prefix + "_" + hex32`` of each string of ``key`` (the joined bytes of a stable id's parts)."""
    offsets, data, valid = arrow_strings(key)
    empty = readonly(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.bool_))
    # Four columns, one used: the tuple types of build_journeys' ids, so one compiled kernel serves both.
    hashes = key_hashes(
        (offsets, empty[0], empty[0], empty[0]),
        (data, empty[1], empty[1], empty[1]),
        (valid, empty[2], empty[2], empty[2]),
        *readonly(np.arange(key.len(), dtype=np.int64).reshape(1, -1)),
    )
    prefix_bytes = np.frombuffer((prefix + "_").encode(), dtype=np.uint8)
    raw = hex_ids(*readonly(prefix_bytes, hashes, np.arange(key.len(), dtype=np.int64)))
    return _fixed_width_strings("touchpoint_id", raw)


# --- campaigns and ads -----------------------------------------------------------------------------


def _table(frame: Any, what: str, required: tuple[str, ...], optional: tuple[str, ...]) -> tuple[pl.DataFrame, bool]:
    """The frame's ``required`` and ``optional`` columns as strings (absent optional ones null), and whether
    it has an ``organization_id`` column."""
    df = to_polars(frame, what=what)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SchemaError(f"{what} lack required column(s) {missing}; columns are {df.columns}")
    out = df.select(
        *(pl.col(c).cast(pl.String) for c in required),
        *(pl.col(c).cast(pl.String) if c in df.columns else pl.lit(None, pl.String).alias(c) for c in optional),
    )
    return out, "organization_id" in df.columns


def _unique(value: str, *extra: str) -> list[pl.Expr]:
    """Aggregations: ``value`` (and ``extra`` columns of that row) when the group has one distinct value."""
    one = pl.col(value).n_unique() == 1
    return [pl.when(one).then(pl.col(c).first()).alias(c) for c in (value, *extra)]


_NO_CAMPAIGNS = {
    "campaign_id": pl.String,
    "external_id": pl.String,
    "platform_code": pl.String,
    "organization_id": pl.String,
}


def _resolve_campaigns(touchpoints: pl.DataFrame, campaigns: Any | None, ads: Any | None) -> pl.DataFrame:
    """``campaign_id`` and ``ad_id`` of every touchpoint (null when unresolved or ambiguous).

    The organization is part of every match when both the touchpoints and the campaigns (ads) frame have
    an ``organization_id`` column.
    """
    out = touchpoints.with_columns(pl.lit(None, pl.String).alias("campaign_id"), pl.lit(None, pl.String).alias("ad_id"))
    if touchpoints.height == 0 or (campaigns is None and ads is None):
        return out
    has_org = "organization_id" in touchpoints.columns
    camp, camp_org = (
        _table(campaigns, "campaigns", ("campaign_id", "external_id"), ("platform_code", "organization_id"))
        if campaigns is not None
        else (pl.DataFrame(schema=_NO_CAMPAIGNS), True)
    )
    org = ["organization_id"] if has_org and camp_org else []
    joined = out.drop("campaign_id", "ad_id").with_row_index("_row")
    usable = camp.filter(pl.col("external_id").is_not_null())
    by_platform = usable.group_by([*org, "platform_code", "external_id"]).agg(_unique("campaign_id"))
    by_any = usable.group_by([*org, "external_id"]).agg(_unique("campaign_id"))
    joined = joined.join(
        by_platform.rename({"campaign_id": "_c_platform"}),
        left_on=[*org, "platform_code", "utm_campaign"],
        right_on=[*org, "platform_code", "external_id"],
        how="left",
        maintain_order="left",
    ).join(
        by_any.rename({"campaign_id": "_c_any"}),
        left_on=[*org, "utm_campaign"],
        right_on=[*org, "external_id"],
        how="left",
        maintain_order="left",
    )
    campaign = pl.when(pl.col("platform_code").is_not_null()).then(pl.col("_c_platform")).otherwise(pl.col("_c_any"))
    joined = joined.with_columns(campaign.alias("campaign_id"), pl.lit(None, pl.String).alias("ad_id"))
    if ads is not None:
        ad, ad_org = _table(ads, "ads", ("ad_id", "campaign_id", "external_id"), ("organization_id",))
        org = ["organization_id"] if has_org and ad_org else []
        # An ad's platform is its campaign's.
        platforms = camp.select("campaign_id", "platform_code").unique("campaign_id", keep="first")
        ad = ad.filter(pl.col("external_id").is_not_null()).join(platforms, on="campaign_id", how="left")
        in_campaign = ad.group_by(["campaign_id", "external_id"]).agg(_unique("ad_id"))
        ad_platform = ad.group_by([*org, "platform_code", "external_id"]).agg(_unique("ad_id", "campaign_id"))
        ad_any = ad.group_by([*org, "external_id"]).agg(_unique("ad_id", "campaign_id"))
        joined = (
            joined.join(
                in_campaign.rename({"ad_id": "_a_campaign"}),
                left_on=["campaign_id", "utm_content"],
                right_on=["campaign_id", "external_id"],
                how="left",
                maintain_order="left",
            )
            .join(
                ad_platform.rename({"ad_id": "_a_platform", "campaign_id": "_ac_platform"}),
                left_on=[*org, "platform_code", "utm_content"],
                right_on=[*org, "platform_code", "external_id"],
                how="left",
                maintain_order="left",
            )
            .join(
                ad_any.rename({"ad_id": "_a_any", "campaign_id": "_ac_any"}),
                left_on=[*org, "utm_content"],
                right_on=[*org, "external_id"],
                how="left",
                maintain_order="left",
            )
        )
        has_campaign = pl.col("campaign_id").is_not_null()
        has_platform = pl.col("platform_code").is_not_null()
        ad_id = pl.when(has_campaign).then(pl.col("_a_campaign")).when(has_platform).then(pl.col("_a_platform"))
        ad_campaign = pl.when(has_platform).then(pl.col("_ac_platform")).otherwise(pl.col("_ac_any"))
        joined = joined.with_columns(
            ad_id.otherwise(pl.col("_a_any")).alias("ad_id"),
            pl.coalesce(pl.col("campaign_id"), ad_campaign).alias("campaign_id"),
        )
    return joined.sort("_row").select(out.columns)
