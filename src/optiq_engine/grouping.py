"""Group keys as 64-bit integers, shared by attribute() and build_journeys().

Rows are grouped by (``organization_id``, ``site_id``, ``anon_id``). Exact dictionary encoding of a
high-cardinality string key costs about 50x a 64-bit hash, so groups are keyed by a polars hash and checked
with a second, independent one: the sort kernel counts adjacent rows with equal primary but different check
hashes, and a non-zero count sends the caller back to :func:`group_hashes` with ``exact=True`` (dense codes,
which cannot collide; :func:`hash_attempts` runs that retry). Polars hashes are stable only within one
polars version: fine for grouping in memory, never for ids that are stored (those use
:mod:`optiq_engine.kernels.stable_id`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import polars as pl

from .kernels.sort import tie_runs
from .kernels.splitmix import finalise
from .layout import readonly

__all__ = [
    "KEY_COLUMNS",
    "NO_MASK",
    "arrow_strings",
    "SEED_H",
    "SEED_H2",
    "group_key_columns",
    "group_hashes",
    "hash_attempts",
    "hash_keys",
    "order_ties_by_id",
    "splitmix",
    "stable_draws",
]

SEED_H = 0x243F6A8885A308D3
SEED_H2 = 0x452821E638D01377
#: Optional key columns, in the order of the group key; ``anon_id`` always comes last.
KEY_COLUMNS = ("organization_id", "site_id")
#: A mask that keeps every bit of the primary hash (tests pass a small mask to provoke collisions).
NO_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def group_key_columns(*frames: pl.DataFrame) -> list[str]:
    """Key columns that tell groups apart: shared organization/site columns that are not one constant.

    A column that holds one value (or only nulls) in every frame separates no groups, so hashing it would
    only cost time; ``anon_id`` is always last.

    Parameters
    ----------
    *frames
        The frames grouped together (touchpoints and conversions, or events); a key column counts only if
        every frame has it.

    Returns
    -------
    list of str
        Among :data:`KEY_COLUMNS`, those that vary, then ``"anon_id"``.
    """
    keys = []
    for c in KEY_COLUMNS:
        if any(c not in f.columns for f in frames):
            continue
        cols = [f.get_column(c).cast(pl.String) for f in frames]
        first = next((s[0] for s in cols if len(s)), None)
        constant = all(
            (s.null_count() == len(s)) if first is None else (s.null_count() == 0 and bool((s == first).all()))
            for s in cols
        )
        if not constant:
            keys.append(c)
    return [*keys, "anon_id"]


def splitmix(x: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mix (splitmix64's finaliser), on a copy.

    Parameters
    ----------
    x
        Integers of any dtype, taken as uint64 (wrapping).

    Returns
    -------
    numpy.ndarray
        uint64, one per element of ``x``; ``x`` is left untouched.
    """
    with np.errstate(over="ignore"):
        return finalise(x.astype(np.uint64, copy=True))


def hash_keys(frame: pl.DataFrame, keys: Sequence[str], seed: int) -> np.ndarray:
    """uint64 hash of the string values of ``keys`` in every row (null is a value of its own).

    Parameters
    ----------
    frame
        The rows.
    keys
        At least one column of ``frame``, each cast to String; the last one's hash is mixed with the others'.
    seed
        The polars hash seed (:data:`SEED_H` or :data:`SEED_H2`).

    Returns
    -------
    numpy.ndarray
        uint64, one per row; stable only within one polars version.
    """
    keys = list(keys)
    cols = frame.select(pl.col(k).cast(pl.String).hash(seed).alias(k) for k in keys)
    h = cols.get_column(keys[-1]).to_numpy()
    if len(keys) > 1:
        h = h.copy()
        for i, k in enumerate(keys[:-1]):
            other = cols.get_column(k).to_numpy()
            r = np.uint64((17 + 19 * i) % 64)  # a rotation in 1..63 for fewer than 53 columns
            h = splitmix(h ^ ((other << r) | (other >> (np.uint64(64) - r))))
    return h


def group_hashes(
    frames: Sequence[pl.DataFrame], keys: Sequence[str], *, exact: bool, mask: np.uint64 = NO_MASK
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(h, h2)`` per frame: two independent hashes of the key, or (``exact``) dense codes mixed.

    Equal keys get equal values across all ``frames``. ``mask`` is applied to ``h`` (a test hook: a small
    mask makes every run collide). With ``exact=True`` both arrays are ``splitmix(code)`` of a dense code of
    the key, so they cannot collide.

    Parameters
    ----------
    frames
        The frames whose rows are grouped together (each has every column of ``keys``).
    keys
        The key columns (:func:`group_key_columns`).
    exact
        Dense codes instead of hashes (the retry after a collision: :func:`hash_attempts`).
    mask
        ANDed with ``h`` when not exact (default :data:`NO_MASK`: every bit kept).

    Returns
    -------
    list of tuple of numpy.ndarray
        ``(h, h2)`` uint64 arrays per frame, in the order of ``frames``.
    """
    keys = list(keys)
    if not exact:
        out = []
        for f in frames:
            h = hash_keys(f, keys, SEED_H)
            if mask != NO_MASK:  # test hook only: no copy otherwise
                h = h & mask
            out.append((h, hash_keys(f, keys, SEED_H2)))
        return out
    both = pl.concat([f.select(keys) for f in frames], how="vertical")
    uniq = both.unique().with_row_index("_code")
    codes = both.join(uniq, on=keys, how="left", nulls_equal=True, maintain_order="left").get_column("_code")
    mixed = splitmix(codes.to_numpy().astype(np.uint64))
    out, start = [], 0
    for f in frames:
        part = mixed[start : start + f.height]
        out.append((part, part))
        start += f.height
    return out


def hash_attempts(log: logging.Logger) -> Iterator[bool]:
    """``exact`` of each attempt to sort by group hashes: ``False``, then ``True`` after a collision.

    The caller's loop body hashes the key (:func:`group_hashes`, exact codes when ``exact``), sorts, and
    breaks out when the sort counted no collision. Otherwise the next step logs the collision (a warning on
    the caller's ``log``) and gives ``exact=True``; exact codes cannot collide, so a collision after them
    raises :class:`AssertionError`.

    Parameters
    ----------
    log
        The caller's logger, for the collision's warning.

    Yields
    ------
    bool
        ``exact``: False, then True.

    Raises
    ------
    AssertionError
        A third attempt is asked for (exact codes collided, which cannot happen).
    """
    yield False
    log.warning("64-bit group hash collision detected; re-running with exact group codes")
    yield True
    raise AssertionError("group codes collided after exact encoding")  # pragma: no cover - exact codes cannot collide


def order_ties_by_id(
    order: np.ndarray, code: np.ndarray | None, h_s: np.ndarray, ts_s: np.ndarray, ids: pl.Series
) -> tuple[np.ndarray, np.ndarray | None]:
    """Reorder runs of equal (group, time) by id (UTF-8 byte order); fresh arrays, inputs untouched.

    Parameters
    ----------
    order
        The sort permutation (sorted position -> input row).
    code
        An array aligned with the sorted rows that must follow the reordering (channel codes, event flags),
        or None.
    h_s, ts_s
        The group hash and time of the sorted rows: runs of equal pairs are the ties.
    ids
        The rows' ids, in input order (``touchpoint_id``, ``event_id``).

    Returns
    -------
    order : numpy.ndarray
        The permutation with each tie run ordered by id.
    code : numpy.ndarray or None
        ``code`` reordered the same way (None if None).
    """
    runs = tie_runs(h_s, ts_s)
    lengths = runs[:, 1] - runs[:, 0]
    pos = np.repeat(runs[:, 0], lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    run_id = np.repeat(np.arange(len(runs)), lengths)
    ranked = (
        pl.DataFrame({"run": run_id, "id": ids.gather(order[pos]).cast(pl.Binary), "pos": pos})
        .sort(["run", "id"])
        .get_column("pos")
        .to_numpy()
    )
    order = order.copy()
    order[pos] = order[ranked]
    if code is not None:
        code = code.copy()
        code[pos] = code[ranked]
    return order, code


def arrow_strings(series: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read-only (offsets int64[n+1], data uint8[...], valid bool[n]) of a string series, via Arrow.

    Parameters
    ----------
    series
        Any series castable to String (nulls allowed).

    Returns
    -------
    tuple of numpy.ndarray
        ``(offsets, data, valid)``: large-string offsets and data buffers (zero-copy when possible) and the
        non-null mask, all read-only.
    """
    import pyarrow as pa

    valid = series.is_not_null().to_numpy()
    arr = series.cast(pl.String).to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    n = len(arr)
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, dtype=np.uint8)
    return readonly(offsets, data, valid)  # type: ignore[return-value]


def stable_draws(ids: pl.Series, seed: int) -> np.ndarray:
    """One uniform number in [0, 1) per id: FNV-1a 64 of the id's UTF-8 bytes (:mod:`kernels.stable_id`) mixed
    with ``seed`` by splitmix64, so the same id gets the same draw in any run, row order, partition or
    library version (a null id hashes as the byte 0x00).

    Parameters
    ----------
    ids
        The ids (``conversion_id`` ...), any series castable to String.
    seed
        Mixed into every draw: another seed, independent draws.

    Returns
    -------
    numpy.ndarray
        float64 in [0, 1), one per id (53 random bits).
    """
    from .kernels.stable_id import key_hashes

    offsets, data, valid = arrow_strings(ids)
    empty = readonly(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.bool_))
    rows = readonly(np.arange(ids.len(), dtype=np.int64)[None, :])[0]
    h = key_hashes((offsets, *[empty[0]] * 3), (data, *[empty[1]] * 3), (valid, *[empty[2]] * 3), rows)[:, 0]
    mixed = splitmix(h ^ splitmix(np.array([seed], dtype=np.uint64)))
    return (mixed >> np.uint64(11)).astype(np.float64) * 2.0**-53
