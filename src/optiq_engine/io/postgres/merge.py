"""The staged merge: how new rows replace a table's rows within a scope, inside one transaction.

A scope's stored rows are read back and compared in memory on the table's natural key; rows that no longer
exist are deleted, changed ones updated, new ones bulk-copied (binary COPY through ADBC); equal ones are
left alone, so a rerun writes nothing. Foreign keys of the new rows are checked set-based when the role may
(:func:`_set_based_foreign_keys`). The table-specific writers are in :mod:`.write`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import polars as pl

from ...errors import InputError
from .connections import Connections, _inline, _may_set, connections
from .read import _few, _frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteCounts:
    """What a merge changed: rows inserted, rows updated (values differed), stale rows deleted.

    Parameters
    ----------
    inserted
        New rows copied in.
    updated
        Stored rows whose compared values differed, updated in place.
    deleted
        Stored rows of the scope that the new rows lack, deleted.
    """

    inserted: int
    updated: int
    deleted: int

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.deleted


def _key_hash(keys: pl.DataFrame) -> pl.Series:
    """64-bit hashes of the key rows (stable within this process: both sides of a diff are hashed here)."""
    return keys.hash_rows()


#: Rows per slice when a merge compares the stored and the new values of paired rows.
_DIFF_SLICE = 2_000_000


@dataclass(frozen=True)
class _Merge:
    """How new rows replace a table's rows within a scope, inside the caller's transaction.

    ``key`` is the natural key (a unique index of the table); ``values`` are compared and updated;
    ``scope_column`` names the column whose scope values are recomputed: rows in the scope that the new
    result lacks are deleted. ``scope_filter`` narrows the scope (SQL on alias ``t``, may use ``$1``...).
    ``enums`` are the columns of Postgres enum types (read back as text). ``probe``: the scope column (with
    the filter's equalities) leads an index of the table, so that a small scope is read back by index
    probes (:func:`_few`).

    The diff is computed in memory: the scope's current rows are read (binary COPY through ADBC), paired
    with the new rows on a 64-bit hash of the key (each pair's key then compared exactly; a collision falls
    back to a join on the string keys), and only the difference goes back: stale rows deleted and changed rows
    updated by id, through small temporary tables, and new rows bulk-copied straight into the table in key
    order. A rerun that changes nothing writes nothing; a first run is one binary ``COPY`` into the table.
    """

    table: str
    key: tuple[str, ...]
    values: tuple[str, ...]
    scope_column: str
    scope_filter: str = "TRUE"
    enums: tuple[str, ...] = ()
    probe: bool = True

    def _temp(self, what: str) -> str:
        return f"optiq_{what}_{self.table.lower()}"

    @property
    def scope_table(self) -> str:
        return self._temp("scope")

    def stage_scope(self, cur: Any, scope_ids: pl.Series) -> None:
        """Bulk-copy the scope's ids into a temporary table (``scope_table``), sorted: probed in index order."""
        _stage(
            cur, self.scope_table, "id text", pl.DataFrame({"id": scope_ids.cast(pl.String).unique()}), in_order=True
        )

    def read_scope(self, cur: Any, scope_ids: pl.Series, params: list[Any]) -> pl.DataFrame:
        """:meth:`stage_scope`, then :meth:`current`."""
        self.stage_scope(cur, scope_ids)
        return self.current(cur, params)

    def current(self, cur: Any, params: list[Any]) -> pl.DataFrame:
        """The scope's rows now in the table: ``id``, the key and the values (enums as text)."""
        cols = ", ".join(
            f't."{c}"::text AS "{c}"' if c in self.enums else f't."{c}"'
            for c in dict.fromkeys(("id", *self.key, *self.values))
        )
        few = False
        if self.probe:
            cur.execute(f"SELECT count(*) FROM {self.scope_table}")
            few = _few(cur, self.table, cur.fetchone()[0])
        if few:
            # One index probe per scope id: a lateral subquery that cannot be flattened (OFFSET 0) is a
            # nested loop whatever the statistics say (without any, turning hash joins off chose a nested
            # loop over the whole table instead: 22.5M links x 30k ids). A plain index scan per probe: the
            # planner, expecting thousands of rows per id, built a bitmap for each few rows (12.5k journeys'
            # events, cached: 0.60 s with bitmaps, 0.42 s without).
            sql = (
                f"SELECT t.* FROM {self.scope_table} sc CROSS JOIN LATERAL (SELECT {cols} "
                f'FROM "{self.table}" t WHERE t."{self.scope_column}" = sc.id AND {self.scope_filter} OFFSET 0) t'
            )
            with _off(cur, "enable_bitmapscan"):
                cur.execute(_inline(sql, params))
                return _frame(cur)
        sql = (
            f'SELECT {cols} FROM "{self.table}" t JOIN {self.scope_table} sc ON t."{self.scope_column}" = sc.id '
            f"WHERE {self.scope_filter}"
        )
        cur.execute(_inline(sql, params))
        return _frame(cur)

    def apply(
        self, cur: Any, rows: pl.DataFrame, params: list[Any] | None = None, current: pl.DataFrame | None = None
    ) -> WriteCounts:
        """Delete the scope's stale rows, update changed ones, insert new ones; equal rows stay untouched.

        ``rows`` has the table's columns (``id``, the key, the values). ``current``: the scope's rows as
        :meth:`current` read them; else they are read here, and the scope must be staged.
        """
        rows = rows.with_columns(pl.col(pl.Enum, pl.Categorical).cast(pl.String))
        if current is None:
            current = self.current(cur, params or [])
        new, changed, gone = self._diff(rows, current)
        deleted = self._delete(cur, gone)
        updated = self._update(cur, changed)
        inserted = self._insert(cur, new)
        return WriteCounts(inserted=inserted, updated=updated, deleted=deleted)

    def _diff(self, rows: pl.DataFrame, current: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.Series]:
        """(rows to insert, rows to update (with the stored row's id), ids to delete).

        Rows are paired on a 64-bit hash of the key (a join of integers: joining tens of millions of string
        keys in full held both sides' every column twice and ran a 10M-touchpoint rerun out of 24 GB); each
        pair's key is then compared exactly, in slices. A hash shared by two different keys (found within a
        side, or in a pair whose keys differ) falls back to the exact join on the string keys.
        """
        if current.height == 0:
            return rows, rows.clear(), pl.Series("id", [], pl.String)
        key = list(self.key)
        current = current.cast({c: rows.schema[c] for c in current.columns if c in rows.columns})
        h_new, h_old = _key_hash(rows.select(key)), _key_hash(current.select(key))
        if h_new.n_unique() == rows.height and h_old.n_unique() == current.height:
            pairs = pl.DataFrame({"h": h_new, "n": pl.int_range(rows.height, eager=True)}).join(
                pl.DataFrame({"h": h_old, "o": pl.int_range(current.height, eager=True)}),
                on="h",
                how="full",
                coalesce=True,
            )
            both = pairs.filter(pl.col("n").is_not_null() & pl.col("o").is_not_null())
            changed: list[pl.DataFrame] = []
            for i in range(0, both.height, _DIFF_SLICE):
                n, o = both.get_column("n").slice(i, _DIFF_SLICE), both.get_column("o").slice(i, _DIFF_SLICE)
                new, old = rows.select(*key, *self.values).gather(n), current.select(*key, *self.values).gather(o)
                if not all(new.get_column(c).eq_missing(old.get_column(c)).all() for c in key):
                    break  # a hash collision: pairs whose keys differ
                differs = pl.any_horizontal(~new.get_column(c).eq_missing(old.get_column(c)) for c in self.values)
                changed.append(
                    pl.concat([current.select("id").gather(o), new.select(self.values)], how="horizontal").filter(
                        new.select(differs).to_series()
                    )
                )
            else:
                return (
                    rows.gather(pairs.filter(pl.col("o").is_null()).get_column("n")),
                    pl.concat(changed) if changed else rows.select("id", *self.values).clear(),
                    current.get_column("id").gather(pairs.filter(pl.col("n").is_null()).get_column("o")),
                )
        log.warning("%s: 64-bit key hash collision; diffing on the string keys", self.table)
        old = current.with_columns(pl.col("id").alias("__id"), pl.lit(True).alias("__old")).rename(
            {c: f"{c}__old" for c in current.columns if c not in key}
        )
        both = rows.with_columns(pl.lit(True).alias("__new")).join(old, on=key, how="full", coalesce=True)
        new = both.filter(pl.col("__old").is_null()).select(rows.columns)
        gone = both.filter(pl.col("__new").is_null()).get_column("__id").alias("id")
        differs = pl.any_horizontal(~pl.col(c).eq_missing(pl.col(f"{c}__old")) for c in self.values)
        updated = both.filter(pl.col("__new") & pl.col("__old") & differs).select(
            pl.col("__id").alias("id"), *self.values
        )
        return new, updated, gone

    def _delete(self, cur: Any, ids: pl.Series) -> int:
        if ids.len() == 0:
            return 0
        gone = self._temp("gone")
        with _primary_key_probes(cur, self.table, len(ids)) as few:
            _stage(cur, gone, "id text", pl.DataFrame({"id": ids}), in_order=few)
            return _count(cur, f'DELETE FROM "{self.table}" t USING {gone} g WHERE t.id = g.id', len(ids))

    def _update(self, cur: Any, changed: pl.DataFrame) -> int:
        if changed.height == 0:
            return 0
        stage = self._temp("changed")
        cols = ", ".join(f'"{c}"' for c in ("id", *self.values))
        assign = ", ".join(f'"{c}" = s."{c}"' for c in self.values)
        with _primary_key_probes(cur, self.table, changed.height) as few:
            _stage(cur, stage, f'AS SELECT {cols} FROM "{self.table}" WITH NO DATA', changed, in_order=few)
            return _count(
                cur,
                f'UPDATE "{self.table}" t SET {assign}, "updatedAt" = now() FROM {stage} s WHERE t.id = s.id',
                changed.height,
            )

    def _insert(self, cur: Any, new: pl.DataFrame) -> int:
        if new.height == 0:
            return 0
        new = new.sort(list(self.key))  # key order: the unique index is filled page by page, not at random
        foreign_keys = _set_based_foreign_keys(cur, self.table)
        if foreign_keys is not None:  # one locking join per foreign key instead of two triggers per row
            for column, target, target_column in foreign_keys:
                _lock_references(cur, self.table, new.get_column(column), target, target_column)
            cur.execute("SET LOCAL session_replication_role = replica")
        inserted = int(cur.adbc_ingest(self.table, new.to_arrow(), mode="append"))
        if foreign_keys is not None:
            cur.execute("SET LOCAL session_replication_role = origin")
        if inserted != new.height:
            raise RuntimeError(f"{self.table}: COPY wrote {inserted} rows, expected {new.height}")
        return inserted


_FOREIGN_KEYS = """SELECT a.attname::text, c.confrelid::regclass::text, fa.attname::text,
       cardinality(c.conkey) AS n_columns
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = c.confkey[1]
WHERE c.conrelid = $1::regclass AND c.contype = 'f'
ORDER BY c.conname"""

#: Triggers that an INSERT into the table would fire in the default (origin) replication role, other than
#: the foreign-key checks of the table's own constraints (what ``_lock_references`` replaces).
_OTHER_INSERT_TRIGGERS = """SELECT count(*) FROM pg_trigger t
WHERE t.tgrelid = $1::regclass AND t.tgenabled = 'O' AND (t.tgtype & 4) <> 0
  AND NOT (t.tgisinternal AND t.tgconstraint IN (
      SELECT c.oid FROM pg_constraint c WHERE c.conrelid = $1::regclass AND c.contype = 'f'))"""


def _set_based_foreign_keys(cur: Any, table: str) -> list[tuple[str, str, str]] | None:
    """The table's foreign keys as (column, referenced table, referenced column) when they may be checked
    set-based (``_lock_references``) instead of by Postgres' per-row triggers; else ``None``.

    Only when the role may set ``session_replication_role``, every foreign key has one column, and no other
    trigger fires on INSERT (a replica-role insert would skip it).
    """
    if not _may_set(cur, "session_replication_role"):
        return None
    regclass = f'"{table}"'
    cur.execute(_OTHER_INSERT_TRIGGERS, [regclass])
    if cur.fetchone()[0]:
        return None
    cur.execute(_FOREIGN_KEYS, [regclass])
    keys = cur.fetchall()
    if any(n != 1 for *_, n in keys):
        return None
    return [(column, target, target_column) for column, target, target_column, _ in keys]


def _lock_references(cur: Any, table: str, values: pl.Series, target: str, target_column: str) -> None:
    """Check that every non-null value references a row of ``target`` and lock those rows ``FOR KEY SHARE``.

    What Postgres' foreign-key trigger does for each inserted row, for all rows at once: the locks keep the
    referenced rows from being deleted (or their key changed) until this transaction ends, so the check
    holds at commit. Raises :class:`InputError` (nothing is written) when a reference is missing.
    """
    ids = values.drop_nulls().unique()
    if ids.len() == 0:
        return
    refs = f"optiq_refs_{table.lower()}"
    # Rows this transaction inserted or updated (xmin: its own xid; this code opens no subtransaction)
    # cannot be deleted by another one before it commits: found, not locked (locking writes every row).
    join = f'FROM {target} r JOIN {refs} x ON r."{target_column}" = x.v'
    # Few references are found by probes of the referenced key (74k of 10M touchpoints, an incremental run's
    # links: 0.65 s; the planner's hash join scanned the table, 3.3-5.7 s). Locked in physical order: a lock
    # rewrites the row's page, and in the order of a hash join's output each lock read and wrote back a page
    # at random (the 11M events of a 10M full run, locked alone: 167 s in the join's order, 29.5 s in ctid
    # order).
    with _primary_key_probes(cur, target.strip('"'), ids.len()) as few:
        _stage(
            cur,
            refs,
            f'AS SELECT "{target_column}" AS v FROM {target} WITH NO DATA',
            pl.DataFrame({"v": ids}),
            in_order=few,
        )
        cur.execute(
            f"SELECT count(*) FROM (SELECT 1 {join} WHERE r.xmin::text <> {_MY_XID} ORDER BY r.ctid FOR KEY SHARE OF r) locked"
        )
        (locked,) = cur.fetchone()
        if locked < ids.len():  # the rest: rows this transaction wrote, or missing (a second join only then)
            cur.execute(f"SELECT count(*) {join} WHERE r.xmin::text = {_MY_XID}")
            locked += cur.fetchone()[0]
    if locked != ids.len():
        cur.execute(
            f'SELECT x.v::text FROM {refs} x WHERE NOT EXISTS (SELECT 1 FROM {target} r WHERE r."{target_column}" = x.v) '
            "ORDER BY 1 LIMIT 3"
        )
        examples = ", ".join(repr(v) for (v,) in cur.fetchall())
        missing = ids.len() - int(locked)
        raise InputError(
            f'{missing} "{values.name}" value(s) of the {table} rows reference no {target} row (e.g. {examples}); '
            "nothing was written",
            {f"missing {target} reference": missing},
        )


#: This transaction's xid as ``xmin::text`` shows it (32 bits; assigned by its first write).
_MY_XID = "(pg_current_xact_id()::text::bigint % 4294967296)::text"


def _stage(cur: Any, name: str, definition: str, rows: pl.DataFrame, *, in_order: bool = False) -> None:
    """``rows`` bulk-copied into a fresh temporary table, analyzed (temporary tables get no autovacuum: the
    planner would guess their size). No index: its joins are hash joins or probe the other side's index.
    ``in_order``: sorted by the first column (the key that probes the other side's index: see
    :func:`_primary_key_probes`)."""
    if in_order:
        rows = rows.sort(rows.columns[0])
    _temp_table(cur, name, definition)
    cur.adbc_ingest(name, rows.to_arrow(), mode="append", temporary=True)
    cur.execute(f"ANALYZE {name}")


def _temp_table(cur: Any, name: str, definition: str) -> None:
    """A temporary table dropped at commit (recreated if this transaction made one already)."""
    cur.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
    if definition.startswith("AS "):
        cur.execute(f"CREATE TEMP TABLE {name} ON COMMIT DROP {definition}")
    else:
        cur.execute(f"CREATE TEMP TABLE {name} ({definition}) ON COMMIT DROP")


def _count(cur: Any, statement: str, expected: int) -> int:
    """Run a DELETE/UPDATE and check that it touched ``expected`` rows (else a concurrent writer interfered)."""
    cur.execute(f"WITH done AS ({statement} RETURNING 1) SELECT count(*) FROM done")
    (n,) = cur.fetchone()
    if n != expected:
        raise RuntimeError(
            f"{statement.split(' t ')[0]} changed {n} rows, expected {expected}: the rows changed under this "
            "transaction (a concurrent writer?); nothing was written"
        )
    return int(n)


@contextmanager
def _primary_key_probes(cur: Any, table: str, ids: int) -> Iterator[bool]:
    """Within the block, joins are nested loops (hash and merge joins off) when ``ids`` are few for ``table``:
    for statements that join staged ids to a unique key of ``table`` (one row per probe, so the plan
    is an index probe per id with or without statistics). Transaction-local, reset after the block (an
    error rolls the transaction back). Yields whether it probes: then stage the ids sorted, so that the probes
    read each index page once and in order (unsorted, a hash join needs no order: sorting 10M ids took 3-4 s).
    """
    if not _few(cur, table, ids):
        yield False
        return
    with _off(cur, "enable_hashjoin", "enable_mergejoin"):
        yield True


@contextmanager
def _off(cur: Any, *settings: str) -> Iterator[None]:
    """Planner ``settings`` off within the block (transaction-local), reset after it (an error rolls the
    transaction back)."""
    for setting in settings:
        cur.execute(f"SET LOCAL {setting} = off")
    yield
    for setting in settings:
        cur.execute(f"RESET {setting}")


@contextmanager
def transaction(url: str | Connections) -> Iterator[Any]:
    """An ADBC cursor in one transaction: committed when the block ends, rolled back on any error.

    ``url``: a database URL (a connection of its own), or the job's :class:`Connections` (one of its).

    Parameters
    ----------
    url
        A PostgreSQL URL, or a job's :class:`Connections`.

    Yields
    ------
    adbc_driver_manager.dbapi.Cursor
        The cursor; the connection goes back to the pool (or is closed) after the block.

    Raises
    ------
    ConfigError
        ``url`` is a string that is not a PostgreSQL URL.
    """
    with connections(url) as db, db.connection() as conn:
        try:
            with conn.cursor() as cur:
                yield cur
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
