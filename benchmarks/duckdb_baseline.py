"""DuckDB baseline for the six heuristic attribution models.

The tool a data scientist would reach for instead of the engine: the semantics of ``docs/attribution.md``
written as one DuckDB SQL query, run on the same unsorted input frames the engine gets (polars frames handed
to DuckDB as Arrow), on ``threads`` threads (2 by default):

1. ``cv``: each conversion's previous conversion time in its group (``lag`` over the group key, ordered by
   ``(occurred_at, conversion_id)``) for ``reset_after_conversion``;
2. ``pairs``: a hash join on the group key filtered by the window ``T - lookback < t <= T`` and ``t > T_prev``;
3. ``last_touch``: the last eligible touchpoint's time per conversion (TIME_DECAY ages from it);
4. ``ordered``: one window partitioned by conversion and ordered by ``(t, touchpoint_id)``: position, count,
   the last non-direct touchpoint, TIME_DECAY's normaliser;
5. weights, and the value split of LINEAR and POSITION_BASED in closed form (their quotas take one or three
   distinct values per conversion, so their ranks are arithmetic);
6. ``ranked``: TIME_DECAY's remainder and ranks, a second window; then one row per model (``unnest``).

Exactness, and where it comes from:

- times are compared as integer microseconds (``epoch_us``), never as ``TIMESTAMPTZ - INTERVAL``, which
  would follow the session time zone's calendar;
- every float constant is a bound DOUBLE parameter computed in Python as the engine computes it
  (``first / (first + last)``, ``1.0 - first - last``): a SQL literal such as ``0.4`` is an exact DECIMAL in
  DuckDB and would round differently;
- TIME_DECAY's normaliser is ``sum(r) OVER`` a whole-partition frame of a window with ``ORDER BY``, which
  DuckDB adds up in that order, i.e. left to right as the docs say (a running frame would not: past 16 rows
  DuckDB combines segment-tree nodes); ``test_duckdb_baseline.py`` checks it bit for bit on 45 touchpoints;
- the largest-remainder split is integer arithmetic: a positive remainder ``R`` is handed out in rounds,
  ``R // n`` units to every position and one more to the first ``R % n`` positions by (fraction desc,
  position desc), the docs' round-by-round rule in closed form. The three models whose weights are one 1
  and zeros take the whole value or nothing (the engine's shortcut, the same result).

A *negative* remainder (the floored quotas adding up to more than the value, which float rounding of huge
values can cause: 2**62 micros over five TIME_DECAY touchpoints, for one) takes units back from the positive
parts by (fraction, -position), round by round; the query that can do so has one more window ordering for
TIME_DECAY, so it runs only when the first query meets such a conversion. Known limitation: a negative
remainder so large that a part would run out before the last round is not implemented (the query then
fails with an error naming it rather than return a wrong split).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

import polars as pl

from benchmarks.polars_baseline import ALL_MODELS, LINKS_SCHEMA, _check_args

__all__ = ["ALL_MODELS", "LINKS_SCHEMA", "attribute_duckdb", "links_query"]

_US = timedelta(microseconds=1)


def _split(q: str, m: str) -> str:
    """Columns b_m (base) and f_m (fraction) of the quota expression ``q`` (docs: value split, step 1)."""
    return f"CASE WHEN {q} >= V::DOUBLE THEN V ELSE floor({q})::BIGINT END AS b_{m},\n        {q} - floor({q}) AS f_{m}"


def _hand_out(own: str, remainder: str, rank: str, negative: tuple[str, str, str] | None) -> str:
    """A position's part (docs: value split, steps 3 and 4).

    ``R >= 0``: its base, ``R // n`` full rounds and one more unit if its rank by (fraction desc, position
    desc) is within ``R % n``. ``R < 0``: ``negative`` is (its rank among the positive parts by (fraction,
    -position), the number ``P`` of positive parts, the smallest positive part); every positive part gives
    ``-R // P`` units and the first ``-R % P`` one more, which is the docs' rounds as long as no part runs
    out (otherwise the query fails: not implemented). ``negative=None``: the query fails on ``R < 0`` with a
    message that asks for the query with those columns (:func:`attribute_duckdb` then reruns it).
    """
    if negative is None:
        taken = "error('duckdb baseline: negative largest-remainder (value ' || V || ' micros): needs negative_remainders=True')"
    else:
        rank_up, count, smallest = negative
        full, left = f"((-{remainder}) // {count})", f"((-{remainder}) % {count})"
        taken = (
            f"CASE WHEN {own} <= 0 THEN {own} "
            f"WHEN {smallest} < {full} + ({left} > 0)::BIGINT THEN error('duckdb baseline: a negative "
            f"largest-remainder that empties a part (value ' || V || ' micros) is not implemented') "
            f"ELSE {own} - {full} - ({rank_up} <= {left})::BIGINT END"
        )
    return f"CASE WHEN {remainder} >= 0 THEN {own} + {remainder} // n + ({rank} <= {remainder} % n)::BIGINT ELSE {taken} END"


def links_query(
    models: Sequence[str],
    *,
    reset_after_conversion: bool,
    keys: Sequence[str],
    wide: bool = False,
    negative_remainders: bool = False,
) -> str:
    """The SQL of :func:`attribute_duckdb` over views ``tp_in`` / ``cv_in``.

    Parameters (bound, typed by DuckDB from the Python values): ``$lookback_us`` (BIGINT), the DOUBLEs
    ``$pb_first2``, ``$pb_last2``, ``$pb_first``, ``$pb_last``, ``$pb_mid``, ``$half_life_us`` and the
    VARCHAR list ``$direct``; only those the models use appear in the text. ``wide``: one row per
    (conversion, touchpoint) with columns ``w_i`` / ``c_i`` (weight and credited micros of ``models[i]``)
    instead of one row per link. ``negative_remainders``: also the columns that take units back when the
    floored quotas exceed the value (TIME_DECAY: one more window ordering); without them such a conversion
    fails the query.
    """
    # anon_id is never null; nulls in organization_id / site_id are a key value of their own
    on = " AND ".join(f"c.{k} = t.{k}" if k == "anon_id" else f"c.{k} IS NOT DISTINCT FROM t.{k}" for k in keys)
    key_list = ", ".join(keys)
    prev = (
        f"lag(epoch_us(occurred_at)) OVER (PARTITION BY {key_list} ORDER BY occurred_at, conversion_id::VARCHAR)"
        if reset_after_conversion
        else "NULL::BIGINT"
    )
    window_cols = [
        "row_number() OVER w AS position",
        "count(*) OVER w_all AS n",
    ]
    if "LAST_NON_DIRECT" in models:
        # the last non-direct touchpoint in (t, touchpoint_id) order (a null channel is not non-direct)
        window_cols.append(
            "last_value(CASE WHEN coalesce(NOT list_contains($direct, channel), false) THEN touchpoint_id END "
            "IGNORE NULLS) OVER w_all AS lnd_id"
        )
    if "TIME_DECAY" in models:
        # raw weights aged from the last eligible touchpoint, summed left to right: an aggregate over an
        # ordered whole-partition frame is evaluated in ORDER BY order
        window_cols.append("sum(r_td) OVER w_all AS td_total")
    weight: dict[str, str] = {}
    credit: dict[str, str] = {}
    extra: list[str] = []  # per-row columns the credits need
    for m in models:
        if m == "FIRST_TOUCH":
            weight[m] = "(position = 1)::DOUBLE"
        elif m == "LAST_TOUCH":
            weight[m] = "(position = n)::DOUBLE"
        elif m == "LAST_NON_DIRECT":  # all direct: position n
            weight[m] = "(CASE WHEN lnd_id IS NULL THEN position = n ELSE touchpoint_id = lnd_id END)::DOUBLE"
        elif m == "LINEAR":
            # equal quotas: the same base everywhere, R = V - n * base, and the ranking by (fraction desc,
            # position desc) is n - position + 1; a negative R takes from the same order (every part positive)
            weight[m] = "1.0::DOUBLE / n::DOUBLE"
            extra.append(_split("(V::DOUBLE * (1.0::DOUBLE / n::DOUBLE))", "lin"))
            credit[m] = (
                "CASE WHEN V - n * b_lin >= 0 THEN "
                "b_lin + (V - n * b_lin) // n + ((n - position + 1) <= (V - n * b_lin) % n)::BIGINT "
                "ELSE b_lin - (n * b_lin - V) // n - ((n - position + 1) <= (n * b_lin - V) % n)::BIGINT END"
            )
        elif m == "POSITION_BASED":
            # three distinct quotas: position 1 (a), position n (z), the middle ones (m); ranks in closed form
            weight[m] = (
                "CASE WHEN n = 1 THEN 1.0::DOUBLE"
                " WHEN n = 2 THEN (CASE WHEN position = 1 THEN $pb_first2 ELSE $pb_last2 END)"
                " WHEN position = 1 THEN $pb_first WHEN position = n THEN $pb_last"
                " ELSE $pb_mid / (n - 2)::DOUBLE END"
            )
            w_a = "(CASE WHEN n = 2 THEN $pb_first2 ELSE $pb_first END)"
            w_z = "(CASE WHEN n = 2 THEN $pb_last2 ELSE $pb_last END)"
            w_m = "(CASE WHEN n >= 3 THEN $pb_mid / (n - 2)::DOUBLE ELSE 0.0::DOUBLE END)"
            extra += [
                _split(f"(V::DOUBLE * {w_a})", "pa"),
                _split(f"(V::DOUBLE * {w_z})", "pz"),
                _split(f"(V::DOUBLE * {w_m})", "pm"),
            ]
            remainder = "(V - b_pa - b_pz - (n - 2) * b_pm)"
            rank = (
                "(CASE WHEN position = 1 THEN 1 + (f_pz >= f_pa)::BIGINT + (n - 2) * (f_pm >= f_pa)::BIGINT"
                " WHEN position = n THEN 1 + (f_pa > f_pz)::BIGINT + (n - 2) * (f_pm > f_pz)::BIGINT"
                " ELSE 1 + (f_pa > f_pm)::BIGINT + (f_pz >= f_pm)::BIGINT + (n - 1 - position) END)"
            )
            own = "(CASE WHEN position = 1 THEN b_pa WHEN position = n THEN b_pz ELSE b_pm END)"
            # a negative remainder: ranks among the positive parts by (fraction, -position)
            rank_up = (
                "(CASE WHEN position = 1 THEN 1 + (b_pz > 0 AND f_pz <= f_pa)::BIGINT"
                " + (n - 2) * (b_pm > 0 AND f_pm <= f_pa)::BIGINT"
                " WHEN position = n THEN 1 + (b_pa > 0 AND f_pa < f_pz)::BIGINT + (n - 2) * (b_pm > 0 AND f_pm < f_pz)::BIGINT"
                " ELSE 1 + (b_pa > 0 AND f_pa < f_pm)::BIGINT + (b_pz > 0 AND f_pz <= f_pm)::BIGINT + (n - 1 - position) END)"
            )
            count = "((b_pa > 0)::BIGINT + (b_pz > 0)::BIGINT + (n - 2) * (b_pm > 0)::BIGINT)"
            smallest = (
                "least(CASE WHEN b_pa > 0 THEN b_pa END, CASE WHEN b_pz > 0 THEN b_pz END,"
                " CASE WHEN n >= 3 AND b_pm > 0 THEN b_pm END)"
            )
            negative = (rank_up, count, smallest) if negative_remainders else None
            credit[m] = f"CASE WHEN n = 1 THEN V ELSE {_hand_out(own, remainder, rank, negative)} END"
        else:  # TIME_DECAY: quotas of no pattern, so the remainder and ranks take a window
            weight[m] = "r_td / td_total"
            negative = ("kup_td", "npos_td", "minpos_td") if negative_remainders else None
            credit[m] = _hand_out("b_td", "rem_td", "k_td", negative)
        if m in ("FIRST_TOUCH", "LAST_TOUCH", "LAST_NON_DIRECT"):  # one weight of 1: all or nothing
            credit[m] = f"CASE WHEN {weight[m]} = 1.0 THEN V ELSE 0 END"
    decay = (
        "pow(2.0::DOUBLE, -((tl.t_last - p.ts)::DOUBLE) / $half_life_us) AS r_td"
        if "TIME_DECAY" in models
        else "NULL::DOUBLE AS r_td"
    )
    td_cols = f",\n        {_split('(V::DOUBLE * (r_td / td_total))', 'td')}" if "TIME_DECAY" in models else ""
    td_window = (
        ",\n        V - sum(b_td) OVER (PARTITION BY cno)::BIGINT AS rem_td,"
        "\n        row_number() OVER (PARTITION BY cno ORDER BY f_td DESC, position DESC) AS k_td"
        if "TIME_DECAY" in models
        else ""
    )
    if "TIME_DECAY" in models and negative_remainders:
        td_window += (
            ",\n        row_number() OVER (PARTITION BY cno ORDER BY (b_td > 0) DESC, f_td, position DESC) AS kup_td,"
            "\n        sum((b_td > 0)::BIGINT) OVER (PARTITION BY cno) AS npos_td,"
            "\n        min(CASE WHEN b_td > 0 THEN b_td END) OVER (PARTITION BY cno) AS minpos_td"
        )
    extra_cols = "".join(f",\n        {e}" for e in extra)
    # every weight, and every credit but TIME_DECAY's, before the last window: it then carries fewer columns
    parts = [f"{weight[m]} AS w_{i}" for i, m in enumerate(models)]
    parts += [f"{credit[m]} AS c_{i}" for i, m in enumerate(models) if m != "TIME_DECAY"]
    if "TIME_DECAY" in models:
        parts += ["b_td", "f_td"]
    final_credit = [credit[m] if m == "TIME_DECAY" else f"c_{i}" for i, m in enumerate(models)]
    model_list = ", ".join(f"'{m}'" for m in models)
    nl = ",\n        "
    if wide:
        last = (
            "SELECT conversion_id, touchpoint_id, channel, position::INTEGER AS position, "
            "n::INTEGER AS touchpoint_count,\n    "
            + ",\n    ".join(f"w_{i}, {c} AS c_{i}" for i, c in enumerate(final_credit))
            + "\nFROM ranked"
        )
    else:
        last = f"""SELECT conversion_id, touchpoint_id,
    unnest([{model_list}]) AS model,
    unnest([{", ".join(f"w_{i}" for i in range(len(models)))}]) AS weight,
    position::INTEGER AS position, n::INTEGER AS touchpoint_count,
    unnest([{", ".join(final_credit)}]) AS credited_value_micros,
    channel
FROM ranked"""
    return f"""
WITH cv AS (
    SELECT {key_list}, conversion_id::VARCHAR AS conversion_id, epoch_us(occurred_at) AS cv_ts,
        coalesce(value_micros, 0)::BIGINT AS V, {prev} AS prev_ts,
        row_number() OVER () AS cno  -- an integer key of the conversion, cheaper to partition by
    FROM cv_in
),
tp AS (
    SELECT {key_list}, touchpoint_id::VARCHAR AS touchpoint_id, epoch_us(occurred_at) AS ts,
        channel::VARCHAR AS channel
    FROM tp_in
),
pairs AS MATERIALIZED (  -- eligible: T - lookback < t <= T, and t > T_prev with reset (cv_ts: T, ts: t, prev_ts: T_prev)
    SELECT c.cno, c.conversion_id, c.V, t.touchpoint_id, t.ts, t.channel
    FROM cv AS c JOIN tp AS t ON {on}
    WHERE t.ts <= c.cv_ts AND t.ts > c.cv_ts - $lookback_us AND (c.prev_ts IS NULL OR t.ts > c.prev_ts)
),
last_touch AS (  -- the time of each conversion's last eligible touchpoint (TIME_DECAY's reference)
    SELECT cno, max(ts) AS t_last FROM pairs GROUP BY cno
),
ordered AS (  -- positions in (t, touchpoint_id) order (ids compare as bytes), counts, per-journey values
    SELECT *,
        {nl.join(window_cols)}
    FROM (SELECT p.*, {decay} FROM pairs AS p JOIN last_touch AS tl USING (cno))
    WINDOW w AS (PARTITION BY cno ORDER BY ts, touchpoint_id),
        w_all AS (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
),
quotas AS (
    SELECT *{extra_cols}{td_cols}
    FROM ordered
),
parts AS (
    SELECT cno, conversion_id, touchpoint_id, channel, V, position, n,
        {nl.join(parts)}
    FROM quotas
),
ranked AS (  -- TIME_DECAY: remainder R = V - sum(base), rank by (fraction desc, position desc)
    SELECT *{td_window}
    FROM parts
)
{last}
"""


def attribute_duckdb(
    touchpoints: pl.DataFrame,
    conversions: pl.DataFrame,
    *,
    models: Sequence[str] = ALL_MODELS,
    lookback: timedelta = timedelta(days=30),
    reset_after_conversion: bool = True,
    first: float = 0.4,
    last: float = 0.4,
    half_life: timedelta = timedelta(days=7),
    direct_channels: Sequence[str] = ("direct",),
    group_by: Sequence[str] = ("anon_id",),
    threads: int = 2,
    unpivot: Literal["polars", "sql"] = "polars",
) -> pl.DataFrame:
    """Return the links frame (one row per conversion, eligible touchpoint, model), in no particular order.

    The arguments mean what they mean for :func:`benchmarks.polars_baseline.attribute_polars`; ``threads``
    is DuckDB's thread count. Inputs are taken as valid (unique ids, no null keys or times): the engine's
    validation is not repeated here.

    ``unpivot="polars"`` (the default, and what the benchmarks time): the query returns one row per
    (conversion, touchpoint) with every model's weight and credited micros, and the long frame stacks one
    chunk per model that shares the id, position, count and channel columns, without copying them, as the
    engine's links frame does. ``"sql"``: the query itself returns one row per link (``unnest``), every
    string copied once per model (about a fifth more CPU time at 2M touchpoints).
    """
    import duckdb  # a benchmark-only dependency (the dev extra)

    models = _check_args(models, lookback, first, last, half_life, group_by)
    if not models:
        return pl.DataFrame(schema=LINKS_SCHEMA)
    keys = list(group_by)
    tp = touchpoints.select(*keys, "touchpoint_id", "occurred_at", "channel").to_arrow()
    cv_cols = [*keys, "conversion_id", "occurred_at"]
    cv = conversions.select(*cv_cols, "value_micros") if "value_micros" in conversions.columns else None
    if cv is None:
        cv = conversions.select(*cv_cols).with_columns(value_micros=pl.lit(None, dtype=pl.Int64))
    params: dict[str, Any] = {
        "lookback_us": lookback // _US,
        "half_life_us": float(half_life // _US),
        # the engine's float64 operations, done here once
        "pb_first2": first / (first + last),
        "pb_last2": last / (first + last),
        "pb_first": float(first),
        "pb_last": float(last),
        "pb_mid": 1.0 - first - last,
        "direct": [str(c) for c in direct_channels],
    }
    wide = unpivot == "polars"
    sql = links_query(models, reset_after_conversion=reset_after_conversion, keys=keys, wide=wide)
    params = {k: v for k, v in params.items() if f"${k}" in sql}
    with duckdb.connect() as con:  # in memory, owned here
        con.execute(f"SET threads = {int(threads)}")
        con.execute("SET preserve_insertion_order = false")  # the links come in no particular order
        con.register("tp_in", tp)
        con.register("cv_in", cv.to_arrow())
        try:
            result = con.sql(sql, params=params).pl()
        except duckdb.Error as exc:
            if "needs negative_remainders=True" not in str(exc):
                raise
            # a value so large that float rounding overshoots: the query that can take units back
            sql = links_query(
                models, reset_after_conversion=reset_after_conversion, keys=keys, wide=wide, negative_remainders=True
            )
            result = con.sql(sql, params=params).pl()
    if not wide:
        return result.cast(LINKS_SCHEMA)  # type: ignore[arg-type]
    shared = result.select("conversion_id", "touchpoint_id", "position", "touchpoint_count", "channel")
    chunks = [
        shared.select(
            "conversion_id",
            "touchpoint_id",
            pl.lit(m, dtype=pl.String).alias("model"),
            result[f"w_{i}"].alias("weight"),
            "position",
            "touchpoint_count",
            result[f"c_{i}"].alias("credited_value_micros"),
            "channel",
        )
        for i, m in enumerate(models)
    ]
    return pl.concat(chunks, rechunk=False).cast(LINKS_SCHEMA)  # type: ignore[arg-type]
