"""Identity stitching: anon ids joined into persons by a user id (docs/contract.md §1.5).

A visitor who logs in on two devices has two ``anon_id``s (cookies) and one ``user_id``. With
``attribute(..., identity="stitched")`` every ``anon_id`` seen with a user id belongs to the person of its
**latest** user id (the user id of its latest identified row; at equal times the greatest user id in byte
order), and so do **all** its rows, those before the identification included: Snowplow's user stitching
(its user mapping keeps the latest ``user_id`` per cookie id and applies it to the cookie's sessions, logged
in or not). An ``anon_id`` never seen with a user id is a person of its own. Grouping (docs/contract.md §2)
then uses the person instead of the ``anon_id``; the links keep each row's own ids.

Two user ids are never joined: a person is one user id (or one unidentified ``anon_id``). A blank user id
(empty or only whitespace) is no identity: it is read as null and counted.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import polars as pl

from .config import IDENTITIES, Identity
from .errors import OptiqWarning, SchemaError
from .frames import warn_confusable_ids

__all__ = [
    "with_user_ids",
    "IDENTITIES",
    "Identity",
    "IdentityStitch",
    "PERSON",
    "PLACEHOLDER_PATTERN",
    "PLACEHOLDER_USER_IDS",
    "USER_ID",
    "person_keys",
    "resolve_user_ids",
    "stitch",
    "stitch_map",
]

#: The optional column of touchpoints and conversions holding the user id.
USER_ID = "user_id"
#: The column added to both frames with ``identity="stitched"``: the person's key (the group key's last part).
PERSON = "_person"


@dataclass(frozen=True)
class IdentityStitch:
    """How a stitched run joined anon ids into persons (``AttributionResult.identity``).

    Made by :func:`stitch` and :func:`resolve_user_ids`.

    Parameters
    ----------
    anon_ids, identified, persons, merged_anon_ids, merged_persons, several_user_ids, blank_user_ids
        The counts described under Attributes.

    Attributes
    ----------
    anon_ids
        Distinct anon ids of the run (touchpoints and conversions; per organization and site when those
        columns tell groups apart).
    identified
        Of those, the anon ids seen with a user id.
    persons
        Persons after stitching: one per user id seen, plus one per anon id never identified.
    merged_anon_ids, merged_persons
        Anon ids that share their person with another anon id, and the persons they make up: ``merged_anon_ids``
        anon ids were merged into ``merged_persons`` persons.
    several_user_ids
        Anon ids seen with more than one user id (a shared device): each went to its latest user id.
    blank_user_ids
        Rows whose user id was empty, only whitespace or a placeholder (:data:`PLACEHOLDER_USER_IDS`: "null",
        "undefined", "0", ...), read as null (no identity).
    """

    anon_ids: int
    identified: int
    persons: int
    merged_anon_ids: int
    merged_persons: int
    several_user_ids: int
    blank_user_ids: int

    def message(self) -> str:
        """One line for logs and the CLI."""
        line = (
            f"identity stitching: {self.merged_anon_ids:,} anon ids merged into {_persons(self.merged_persons)} "
            f"({self.anon_ids:,} anon ids, {self.identified:,} identified, {_persons(self.persons)})"
        )
        if self.several_user_ids:
            line += f"; {self.several_user_ids:,} anon ids seen with several user ids went to their latest"
        if self.blank_user_ids:
            line += f"; {self.blank_user_ids:,} blank or placeholder user ids read as null"
        return line


def _persons(n: int) -> str:
    return f"{n:,} person" if n == 1 else f"{n:,} persons"


def _user_ids(frame: pl.DataFrame, *, what: str) -> pl.Series:
    """The frame's user ids as strings (null where absent); integers are their decimal strings."""
    if USER_ID not in frame.columns:
        return pl.Series(USER_ID, [None] * frame.height, dtype=pl.String)
    col = frame.get_column(USER_ID)
    if col.dtype == pl.String:
        return col
    if col.dtype.is_integer() or isinstance(col.dtype, (pl.Categorical, pl.Enum)) or col.dtype == pl.Null:
        return col.cast(pl.String)
    raise SchemaError(f"{what} column {USER_ID!r} must hold strings (or integers), got {col.dtype}")


#: User ids that are no identity, compared without case and surrounding spaces: what a tag manager writes when
#: nobody is logged in. Stitching by them would join every anonymous visitor into one person.
PLACEHOLDER_USER_IDS = (
    "",
    "null",
    "none",
    "nil",
    "nan",
    "undefined",
    "unknown",
    "anonymous",
    "guest",
    "n/a",
    "na",
    "-",
    "--",
    "?",
    "0",
    "0.0",
    "-1",
    "false",
    "(not set)",
    "not set",
    "not_set",
    "(none)",
    "(not provided)",
    "not provided",
    "#n/a",
    "[object object]",
    '""',
    "''",
    "anon",
    "visitor",
    "logged_out",
    "00000000-0000-0000-0000-000000000000",
)
#: One user id joining more anon ids than this is most likely a placeholder this list misses, or a test
#: account: the stitch warns (docs/contract.md §1.5).
MANY_ANON_IDS = 100
PLACEHOLDER_PATTERN = "(?i)^\\s*(" + "|".join(re.escape(p) for p in PLACEHOLDER_USER_IDS) + ")\\s*$"


def _identity_rows(frames: dict[str, pl.DataFrame], scope: list[str]) -> tuple[pl.DataFrame, int]:
    """(scope..., ``anon_id``, ``occurred_at``, ``user_id``) of every row of ``frames``, blank and placeholder
    user ids nulled, and the number of those."""
    parts, blank = [], 0
    for what, frame in frames.items():
        users = _user_ids(frame, what=what)
        is_blank = users.str.contains(PLACEHOLDER_PATTERN).fill_null(False)
        blank += int(is_blank.sum())
        if is_blank.any():
            users = users.scatter(is_blank.arg_true(), None)
        parts.append(
            frame.select(*(pl.col(c).cast(pl.String) for c in scope), "anon_id", "occurred_at").with_columns(users)
        )
    return pl.concat(parts, how="vertical"), blank


def stitch_map(rows: pl.DataFrame, scope: list[str]) -> pl.DataFrame:
    """The latest user id of every identified anon id.

    Parameters
    ----------
    rows
        Columns ``scope``, ``anon_id``, ``occurred_at`` and ``user_id`` (null: not identified; blank user
        ids already nulled).
    scope
        Columns within which anon ids and user ids are matched (``organization_id``, ``site_id``).

    Returns
    -------
    polars.DataFrame
        One row per identified (scope, ``anon_id``): ``user_id`` (the user id of its latest identified
        row; at equal times the greatest user id in byte order) and ``user_ids`` (how many distinct ones).
    """
    keys = [*scope, "anon_id"]
    identified = rows.filter(pl.col(USER_ID).is_not_null())
    latest = pl.col(USER_ID).sort_by(["occurred_at", USER_ID]).last()  # strings sort in byte order
    return identified.group_by(keys).agg(latest, pl.col(USER_ID).n_unique().alias("user_ids"))


def _joined(frame: pl.DataFrame, mapping: pl.DataFrame, scope: list[str]) -> pl.DataFrame:
    """``frame``'s scope and ``anon_id`` (as strings) with its anon id's mapped ``user_id`` (null: none)."""
    keys = [*scope, "anon_id"]
    left = frame.select(*(pl.col(c).cast(pl.String) for c in scope), "anon_id")
    return left.join(mapping.select(*keys, USER_ID), on=keys, how="left", nulls_equal=True, maintain_order="left")


def person_keys(frame: pl.DataFrame, mapping: pl.DataFrame, scope: list[str]) -> pl.Series:
    """Per row of ``frame``, its person: ``"u" + user_id`` of its anon id's mapping, else ``"a" + anon_id``
    (the one-letter prefix keeps a user id from ever equalling an anon id).

    Parameters
    ----------
    frame
        Rows with ``anon_id`` and the ``scope`` columns.
    mapping
        :func:`stitch_map` of the rows.
    scope
        Columns within which anon ids are matched (``organization_id``, ``site_id``).

    Returns
    -------
    polars.Series
        :data:`PERSON` (String), one per row of ``frame``.
    """
    user = pl.col(USER_ID)
    person = pl.when(user.is_not_null()).then(pl.lit("u") + user).otherwise(pl.lit("a") + pl.col("anon_id"))
    return _joined(frame, mapping, scope).select(person.alias(PERSON)).to_series()


def _mapping(
    touchpoints: pl.DataFrame, conversions: pl.DataFrame, scope: list[str]
) -> tuple[pl.DataFrame, IdentityStitch]:
    """The stitch map of both frames' rows and its summary (the user id column checked, confusables warned)."""
    if USER_ID not in touchpoints.columns and USER_ID not in conversions.columns:
        raise SchemaError(
            f"identity='stitched' needs a {USER_ID!r} column in touchpoints or conversions (the logged-in user "
            "of the row, null when anonymous); columns are "
            f"{sorted(set(touchpoints.columns) | set(conversions.columns))} (docs/contract.md §1.5)"
        )
    rows, blank = _identity_rows({"touchpoints": touchpoints, "conversions": conversions}, scope)
    warn_confusable_ids(rows.get_column(USER_ID), what=USER_ID)
    mapping = stitch_map(rows, scope)
    return mapping, _summary(rows, mapping, scope, blank)


def stitch(
    touchpoints: pl.DataFrame, conversions: pl.DataFrame, scope: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame, IdentityStitch]:
    """Both normalised frames with a :data:`PERSON` column (group by ``scope + [PERSON]``) and the summary.

    Parameters
    ----------
    touchpoints, conversions
        Normalised frames (``anon_id``, ``occurred_at`` UTC, the ``scope`` columns); at least one has a
        ``user_id`` column (strings or integers; null: anonymous, blank or placeholder values count as null).
    scope
        Columns within which anon ids and user ids are matched (:func:`~optiq_engine.grouping.group_key_columns`
        without ``anon_id``).

    Returns
    -------
    touchpoints, conversions : polars.DataFrame
        The frames with :data:`PERSON` added (every other column unchanged).
    summary : IdentityStitch
        The stitch's counts.

    Raises
    ------
    SchemaError
        Neither frame has a ``user_id`` column (nothing to stitch by), or it holds neither strings nor
        integers.

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime, UTC
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> tp = pl.DataFrame({"anon_id": ["phone", "laptop"], "occurred_at": [t, t], "user_id": [None, None]})
    >>> cv = pl.DataFrame({"anon_id": ["phone", "laptop"], "occurred_at": [t, t], "user_id": ["u1", "u1"]})
    >>> tp, cv, summary = stitch(tp, cv, [])
    >>> tp.get_column("_person").to_list(), summary.merged_anon_ids, summary.merged_persons
    (['uu1', 'uu1'], 2, 1)
    """
    mapping, summary = _mapping(touchpoints, conversions, scope)
    touchpoints = touchpoints.with_columns(person_keys(touchpoints, mapping, scope))
    conversions = conversions.with_columns(person_keys(conversions, mapping, scope))
    return touchpoints, conversions, summary


def resolve_user_ids(
    touchpoints: pl.DataFrame, conversions: pl.DataFrame, scope: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame, IdentityStitch]:
    """Both frames with ``user_id`` replaced by each row's anon id's latest user id, and the summary of all
    rows: any subset of the rows (one conversion type's, ``attribute(by="name")``) then stitches the anon ids
    into the same persons as the whole (a login on one type's conversion identifies for every type).

    Parameters
    ----------
    touchpoints, conversions
        Normalised frames (``anon_id``, ``occurred_at`` UTC, the ``scope`` columns); at least one has a
        ``user_id`` column (strings or integers; null: anonymous, blank or placeholder values count as null).
    scope
        Columns within which anon ids and user ids are matched (:func:`~optiq_engine.grouping.group_key_columns`
        without ``anon_id``).

    Returns
    -------
    touchpoints, conversions : polars.DataFrame
        The frames with ``user_id`` (String) set to the anon id's latest user id, null for an anon id never
        identified.
    summary : IdentityStitch
        The counts of the stitch over all rows.

    Raises
    ------
    SchemaError
        Neither frame has a ``user_id`` column, or it holds neither strings nor integers.
    """
    mapping, summary = _mapping(touchpoints, conversions, scope)
    touchpoints = touchpoints.with_columns(_joined(touchpoints, mapping, scope).get_column(USER_ID))
    conversions = conversions.with_columns(_joined(conversions, mapping, scope).get_column(USER_ID))
    return touchpoints, conversions, summary


def _summary(rows: pl.DataFrame, mapping: pl.DataFrame, scope: list[str], blank: int) -> IdentityStitch:
    keys = [*scope, "anon_id"]
    n_anon = rows.select(keys).n_unique()
    per_person = mapping.group_by([*scope, USER_ID]).len()
    merged = per_person.filter(pl.col("len") > 1)
    _warn_crowded(per_person)
    return IdentityStitch(
        anon_ids=n_anon,
        identified=mapping.height,
        persons=n_anon - mapping.height + per_person.height,
        merged_anon_ids=int(merged.get_column("len").sum()),
        merged_persons=merged.height,
        several_user_ids=int((mapping.get_column("user_ids") > 1).sum()),
        blank_user_ids=blank,
    )


def _warn_crowded(per_person: pl.DataFrame) -> None:
    """Warn about user ids that join more than :data:`MANY_ANON_IDS` anon ids into one person."""
    crowded = per_person.filter(pl.col("len") > MANY_ANON_IDS).sort("len", descending=True)
    if crowded.height:
        examples = ", ".join(f"{u!r} ({n:,} anon ids)" for u, n in crowded.select(USER_ID, "len").head(3).rows())
        warnings.warn(
            f"{crowded.height:,} user id(s) each join more than {MANY_ANON_IDS} anon ids into one person: "
            f"{examples}; a placeholder for 'not logged in' or a test account joins unrelated visitors and "
            "moves their credit: give such ids as null (docs/contract.md §1.5)",
            OptiqWarning,
            stacklevel=2,
        )


def with_user_ids(
    touchpoints: pl.DataFrame, conversions: pl.DataFrame, identities: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Touchpoints and conversions with a ``user_id`` column: their anon id's latest user id among
    ``identities`` (null for an anon id never identified), and the number of blank user ids there.

    ``optiq run`` reads the user id from the key ``AttributionConfig.identity_key`` of the tracking events'
    ``properties`` (any event type: a login is usually a ``CUSTOM`` event, neither touchpoint nor
    conversion); :func:`stitch` then finds the same map from these columns (docs/contract.md §1.5).

    Parameters
    ----------
    touchpoints, conversions
        The slice's frames (``anon_id`` and the ``organization_id`` / ``site_id`` columns they have); a
        ``user_id`` column they already have is replaced.
    identities
        ``anon_id``, ``occurred_at``, ``user_id`` and the ``organization_id`` / ``site_id`` columns the
        other frames share: one row per identified event.

    Returns
    -------
    touchpoints, conversions : polars.DataFrame
        With ``user_id`` (String) last.
    blank : int
        Rows of ``identities`` whose user id was blank or a placeholder (:data:`PLACEHOLDER_USER_IDS`).

    Raises
    ------
    SchemaError
        ``identities.user_id`` holds neither strings nor integers.
    """
    scope = [
        c for c in ("organization_id", "site_id") if all(c in f.columns for f in (touchpoints, conversions, identities))
    ]
    keys = [*scope, "anon_id"]
    rows, blank = _identity_rows({"events": identities.filter(pl.col("anon_id").is_not_null())}, scope)
    mapping = stitch_map(rows, scope).select(*keys, USER_ID)

    def join(frame: pl.DataFrame) -> pl.DataFrame:
        frame = frame.drop(USER_ID, strict=False)
        cast = frame.select(*(pl.col(c).cast(pl.String) for c in keys))
        users = cast.join(mapping, on=keys, how="left", nulls_equal=True, maintain_order="left").get_column(USER_ID)
        return frame.with_columns(users)

    return join(touchpoints), join(conversions), blank
