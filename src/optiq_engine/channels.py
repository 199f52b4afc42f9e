"""Channel derivation from click ids and UTM parameters (docs/contract.md §4), driven by a replaceable rules table."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from .errors import ConfigError
from .frames import INVISIBLE_CHARACTERS

__all__ = [
    "ChannelRule",
    "ChannelRules",
    "DEFAULT_CHANNEL_RULES",
    "derive_channels",
    "channel_sql",
    "CLICK_ID_COLUMNS",
    "direct_lookalikes",
    "clean_channel_labels",
    "confusable_channels",
    "missing_lookalikes",
]

CLICK_ID_COLUMNS = ("gclid", "fbclid", "ttclid")
DIRECT = "direct"
UNASSIGNED = "unassigned"

_SEARCH = r"google|bing|yahoo|baidu|duckduckgo|yandex|ecosia|naver|search"
_SOCIAL = r"facebook|fb|instagram|ig|meta|tiktok|linkedin|twitter|x|t\.co|pinterest|snapchat|reddit|social"
_PAID = r".*cp.*|ppc|retargeting|paid.*"


@dataclass(frozen=True)
class ChannelRule:
    """One row of the channel rules table: every given condition must hold.

    ``click_id`` names a click-id column that must be non-null; ``source`` / ``medium`` are regular
    expressions that must match the whole lower-cased, trimmed ``utm_source`` / ``utm_medium``
    (a null value never matches).

    Parameters
    ----------
    channel
        The channel a matching row gets (a non-empty string).
    click_id
        One of :data:`CLICK_ID_COLUMNS` (``gclid``, ``fbclid``, ``ttclid``): the row matches only if it is
        non-null. Default None: no click-id condition.
    source, medium
        Regular expressions matched against the whole trimmed, lower-cased ``utm_source`` /
        ``utm_medium`` (anchored: ``^(?:pattern)$``). Default None: no condition.

    Raises
    ------
    ConfigError
        An empty or non-string ``channel``, an unknown ``click_id``, no condition at all, or a ``source`` /
        ``medium`` that is not a valid regular expression.
    """

    channel: str
    click_id: str | None = None
    source: str | None = None
    medium: str | None = None

    def __post_init__(self) -> None:
        if not self.channel or not isinstance(self.channel, str):
            raise ConfigError(f"channel rule needs a channel name, got {self.channel!r}")
        if self.click_id is not None and self.click_id not in CLICK_ID_COLUMNS:
            raise ConfigError(f"channel rule click_id must be one of {CLICK_ID_COLUMNS}, got {self.click_id!r}")
        if self.click_id is None and self.source is None and self.medium is None:
            raise ConfigError(f"channel rule for {self.channel!r} has no condition")
        for name in ("source", "medium"):
            pattern = getattr(self, name)
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ConfigError(
                        f"channel rule for {self.channel!r}: bad {name} regex {pattern!r}: {exc}"
                    ) from None


@dataclass(frozen=True)
class ChannelRules:
    """An ordered rules table; the first matching rule wins.

    Rows with neither source nor medium (and no click id) are ``direct``; rows no rule matches are
    ``unassigned``.

    Parameters
    ----------
    rules
        The rules, in priority order (:meth:`from_frame` builds them from a table).
    """

    rules: tuple[ChannelRule, ...]

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> ChannelRules:
        """Rules from a frame with columns ``channel`` and optional ``click_id``, ``source``, ``medium``.

        Parameters
        ----------
        frame
            One rule per row, in priority order (the first matching rule wins); other columns are ignored,
            a null ``click_id`` / ``source`` / ``medium`` is no condition.

        Returns
        -------
        ChannelRules

        Raises
        ------
        ConfigError
            The frame has no ``channel`` column, or a row is not a valid :class:`ChannelRule`.
        """
        missing = {"channel"} - set(frame.columns)
        if missing:
            raise ConfigError(f"channel rules table needs a 'channel' column, got {frame.columns}")
        cols = [c for c in ("click_id", "source", "medium") if c in frame.columns]
        return cls(tuple(ChannelRule(**row) for row in frame.select(["channel", *cols]).iter_rows(named=True)))

    def to_frame(self) -> pl.DataFrame:
        """The rules as a frame (edit it and pass it back through :meth:`from_frame`)."""
        return pl.DataFrame(
            [r.__dict__ for r in self.rules],
            schema={"channel": pl.String, "click_id": pl.String, "source": pl.String, "medium": pl.String},
        )

    @property
    def channels(self) -> tuple[str, ...]:
        """Every channel name these rules can produce, ``direct`` and ``unassigned`` included."""
        names = dict.fromkeys([r.channel for r in self.rules] + [DIRECT, UNASSIGNED])
        return tuple(names)


DEFAULT_CHANNEL_RULES = ChannelRules(
    (
        ChannelRule("google_ads", click_id="gclid"),
        ChannelRule("meta_ads", click_id="fbclid"),
        ChannelRule("tiktok_ads", click_id="ttclid"),
        ChannelRule(DIRECT, source=r"\(direct\)", medium=r"\(none\)|\(not set\)"),
        ChannelRule("paid_search", source=_SEARCH, medium=_PAID),
        ChannelRule("paid_social", source=_SOCIAL, medium=_PAID),
        ChannelRule("paid_social", medium=r"paid[_ -]?social|social[_ -]?paid"),
        ChannelRule("display", medium=r"display|banner|expandable|interstitial|cpm"),
        ChannelRule("video", medium=r"video|paid[_ -]?video"),
        ChannelRule("video", source=r"youtube|vimeo|twitch"),
        ChannelRule("email", medium=r"e[_ -]?mail|newsletter"),
        ChannelRule("email", source=r"e[_ -]?mail|newsletter"),
        ChannelRule("affiliate", medium=r"affiliates?"),
        ChannelRule("organic_search", medium=r"organic"),
        ChannelRule("organic_search", source=_SEARCH, medium=r"referral"),
        ChannelRule("organic_social", medium=r"social|social[_ -]network|social[_ -]media|sm"),
        ChannelRule("organic_social", source=_SOCIAL),
        ChannelRule("referral", medium=r"referral|app|link"),
        ChannelRule("paid_other", medium=_PAID),
    )
)


def _rule_expr(rule: ChannelRule) -> pl.Expr:
    cond = pl.lit(True)
    if rule.click_id is not None:
        cond = cond & pl.col(f"_has_{rule.click_id}")
    for col, pattern in (("_source", rule.source), ("_medium", rule.medium)):
        if pattern is not None:
            cond = cond & pl.col(col).str.contains(f"^(?:{pattern})$").fill_null(False)
    return cond


def derive_channels(frame: pl.DataFrame, rules: ChannelRules | None = None) -> pl.Series:
    """The channel of every row of ``frame`` from its click-id and UTM columns (missing columns are null).

    The rules run once per distinct (click ids present, source, medium) combination, not per row.

    Parameters
    ----------
    frame
        Rows with any of the columns ``gclid``, ``fbclid``, ``ttclid``, ``utm_source``, ``utm_medium``.
    rules
        The rules table; default None: :data:`DEFAULT_CHANNEL_RULES`.

    Returns
    -------
    polars.Series
        ``channel`` (String), one per row of ``frame``, in its order.
    """
    rules = rules or DEFAULT_CHANNEL_RULES
    keys: list[pl.Expr] = []
    for c in CLICK_ID_COLUMNS:
        present = pl.col(c).is_not_null() if c in frame.columns else pl.lit(False)
        keys.append(present.alias(f"_has_{c}"))
    for c, alias in (("utm_source", "_raw_source"), ("utm_medium", "_raw_medium")):
        keys.append((pl.col(c).cast(pl.String) if c in frame.columns else pl.lit(None, dtype=pl.String)).alias(alias))
    # with_columns, not select: literal keys (a missing column) must broadcast to the frame's height
    combos = frame.lazy().with_columns(keys).select(k.meta.output_name() for k in keys).collect()
    distinct = combos.unique().with_columns(
        pl.col("_raw_source").str.strip_chars().str.to_lowercase().replace("", None).alias("_source"),
        pl.col("_raw_medium").str.strip_chars().str.to_lowercase().replace("", None).alias("_medium"),
    )
    no_utm = pl.col("_source").is_null() & pl.col("_medium").is_null()
    expr: Any = pl  # pl.when, then Then.when / ChainedThen.when: the rules in order, then the fallbacks
    for rule in rules.rules:  # an empty table: the fallbacks alone (channel_sql does the same)
        expr = expr.when(_rule_expr(rule)).then(pl.lit(rule.channel))
    expr = expr.when(no_utm).then(pl.lit(DIRECT)).otherwise(pl.lit(UNASSIGNED))
    distinct = distinct.with_columns(expr.alias("channel")).drop("_source", "_medium")
    on = list(combos.columns)
    return combos.join(distinct, on=on, how="left", nulls_equal=True, maintain_order="left")["channel"]


def channel_sql(rules: ChannelRules | None, params: dict[str, Any], *, fallbacks: bool = True) -> str:
    """A SQL ``CASE`` giving a ``TouchPoint`` row (alias ``tp``) its channel, as :func:`derive_channels` does.

    The rules' regular expressions go in as bound parameters (added to ``params``), matched with
    Postgres' ``~`` against the trimmed, lower-cased UTM value, anchored like the Python version.
    ``fallbacks=False`` leaves out the two defaults (``direct`` without source and medium, ``unassigned``):
    a row no rule matches gets null (the service maps spend rows with it: spend no rule maps is unmapped).

    Parameters
    ----------
    rules
        The rules table; None: :data:`DEFAULT_CHANNEL_RULES`.
    params
        The statement's bound parameters, updated in place with ``rx_<i>_<j>`` (the patterns) and
        ``ch_<i>`` (the channels), plus ``ch_direct`` and ``ch_unassigned`` with ``fallbacks``.
    fallbacks
        Default True: end with the ``direct`` and ``unassigned`` defaults.

    Returns
    -------
    str
        The ``CASE ... END`` expression (``CAST(NULL AS text)`` for an empty table without fallbacks).
    """
    rules = rules or DEFAULT_CHANNEL_RULES
    ws = "E' \\t\\n\\r\\f\\v'"
    source = f"NULLIF(lower(btrim(tp.\"utmSource\", {ws})), '')"
    medium = f"NULLIF(lower(btrim(tp.\"utmMedium\", {ws})), '')"
    whens = []
    for i, rule in enumerate(rules.rules):
        conds = []
        if rule.click_id is not None:
            conds.append(f"tp.{rule.click_id} IS NOT NULL")
        for j, (column, pattern) in enumerate(((source, rule.source), (medium, rule.medium))):
            if pattern is not None:
                params[f"rx_{i}_{j}"] = f"^(?:{pattern})$"
                conds.append(f"COALESCE({column} ~ CAST(:rx_{i}_{j} AS text), false)")
        params[f"ch_{i}"] = rule.channel
        whens.append(f"WHEN {' AND '.join(conds)} THEN CAST(:ch_{i} AS text)")
    if not fallbacks:
        return "CASE " + " ".join(whens) + " END" if whens else "CAST(NULL AS text)"
    params["ch_direct"], params["ch_unassigned"] = DIRECT, UNASSIGNED
    whens.append(f"WHEN {source} IS NULL AND {medium} IS NULL THEN CAST(:ch_direct AS text)")
    return "CASE " + " ".join(whens) + " ELSE CAST(:ch_unassigned AS text) END"


_INVISIBLE = re.compile(INVISIBLE_CHARACTERS)
#: How pandas and spreadsheets spell a missing value once it has become text (``.astype(str)``, CSV).
MISSING_SPELLINGS = ("nan", "none", "null", "<na>", "nat", "undefined", "#n/a", "n/a")


def _plain(channel: str) -> str:
    """A channel name without case, surrounding spaces, brackets and invisible characters (``" (Direct) "``
    -> ``"direct"``, ``"email\u200b"`` -> ``"email"``)."""
    return _INVISIBLE.sub("", channel).strip().strip("()").strip().lower()


def missing_lookalikes(channels: Sequence[str]) -> list[str]:
    """The channels named like a missing value turned into text (``"nan"``, ``"None"``, ``"<NA>"``).

    Parameters
    ----------
    channels
        The channel names of the data.

    Returns
    -------
    list of str
        Those whose name, without case and surrounding spaces, is one of :data:`MISSING_SPELLINGS`.
    """
    return sorted(c for c in channels if c.strip().lower() in MISSING_SPELLINGS)


def direct_lookalikes(channels: Sequence[str], direct_channels: Sequence[str]) -> list[str]:
    """The channels that are not one of ``direct_channels`` but spell one differently (``"Direct"``,
    ``"(direct)"``, ``"direct "``): LAST_NON_DIRECT and the direct path rules would treat them as any other
    channel (docs/attribution.md).

    Parameters
    ----------
    channels
        The channel names of the data.
    direct_channels
        The configured direct channels (``AttributionConfig.direct_channels``).

    Returns
    -------
    list of str
        The look-alikes, sorted: names equal to a direct channel once case, surrounding spaces and
        brackets are dropped, but not equal to one as written.
    """
    wanted = {_plain(d) for d in direct_channels}
    exact = set(direct_channels)
    return sorted(c for c in channels if c not in exact and _plain(c) in wanted)


def clean_channel_labels(column: pl.Series, labels: pl.Series | None = None) -> pl.Series:
    """Given channel labels stripped of surrounding whitespace; a blank label becomes null (docs/contract.md §4).

    A channel is a name, not a key: ``" google_ads"`` from a spreadsheet is ``google_ads``, and a blank one is
    no channel (the rules derive it, as for a null). Only the distinct labels are checked, so a clean
    column costs one pass over its distinct values and is returned as it is.

    Parameters
    ----------
    column
        The touchpoints' ``channel`` (String, Categorical or Enum).
    labels
        ``column.unique()`` when the caller has it already (default: computed here).

    Returns
    -------
    polars.Series
        ``column`` itself when no label needs cleaning, else a String column with the labels cleaned.
    """
    labels = (column.unique() if labels is None else labels).drop_nulls().cast(pl.String)
    if not labels.str.contains(r"^\s|\s$").any() and not (labels == "").any():
        return column
    cleaned = column.cast(pl.String).str.strip_chars()
    return cleaned.set(cleaned == "", None)


def confusable_channels(channels: Sequence[str]) -> list[list[str]]:
    """Groups of distinct channel names that differ only by case, brackets or invisible characters (``"Email"``,
    ``"email"``, ``"email\u200b"``).

    Parameters
    ----------
    channels
        The channel names of the data.

    Returns
    -------
    list of list of str
        Each group sorted, groups in the order of their first name; names alone in their spelling are left out.
    """
    groups: dict[str, list[str]] = {}
    for name in sorted(channels):
        groups.setdefault(_plain(name), []).append(name)
    return [group for group in groups.values() if len(group) > 1]
