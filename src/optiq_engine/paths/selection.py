"""Held-out scoring of path conversion predictions: Markov order selection and DATA_DRIVEN diagnostics.

Journeys are split into folds by thinning the path table: each path row's conversions and nulls are divided
among the folds by seeded multinomial draws (rows taken in hash order, so the split does not depend on the
order of the table). A model is fitted on the other folds and predicts, for every held-out path, the
probability that a journey with that path converts; the predictions are scored by log-loss and AUC, each
journey counting once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import polars as pl

from ..errors import ConfigError
from ..models.conversion import ConversionModel
from ..models.fitted import FittedModel
from ..models.markov import MarkovChain
from .table import PathTable

__all__ = ["select_markov_order", "compare_conversion_models", "calibration_table", "fold_tables"]

_EPS = 1e-12


def _table(paths: Any) -> PathTable:
    if isinstance(paths, FittedModel):
        paths = paths.paths
    if not isinstance(paths, PathTable):
        paths = PathTable.from_frame(paths, transform="frequency")
    return paths.merged()


def fold_tables(table: PathTable, folds: int, seed: int) -> list[tuple[PathTable, PathTable]]:
    """(train, test) path tables of every fold.

    Parameters
    ----------
    table
        A path table with distinct rows (:meth:`PathTable.merged`).
    folds
        Number of folds (>= 2).
    seed
        Seed of the multinomial split (rows taken in path-hash order).

    Returns
    -------
    list of tuple of PathTable
        ``(train, test)`` per fold: the same rows, the test fold's share of each row's journeys in ``test``
        and the rest in ``train`` (the test tables add up to ``table``, fractional counts included).

    Raises
    ------
    ConfigError
        ``folds < 2``.
    """
    if folds < 2:
        raise ConfigError(f"folds must be >= 2, got {folds}")
    order = np.argsort(table.hashes, kind="stable")
    rng = np.random.default_rng(seed)
    p = np.full(folds, 1.0 / folds)
    conv = np.zeros((table.height, folds))
    null = np.zeros((table.height, folds))
    # Whole journeys are dealt out by the draws; a fractional count's remainder (weighted paths, fit_paths) is
    # shared equally, so every fold's test table holds its share of all of it (it once went to train only).
    for out_, counts in ((conv, table.conversions), (null, table.nulls)):
        whole = np.floor(counts)
        out_[order] = rng.multinomial(whole[order].astype(np.int64), p)
        out_ += ((counts - whole) / folds)[:, None]
    out = []
    for f in range(folds):
        test = replace(table, conversions=conv[:, f], nulls=null[:, f], distinct=True)
        train = replace(table, conversions=table.conversions - conv[:, f], nulls=table.nulls - null[:, f])
        out.append((train, test))
    return out


def markov_predict(chain: MarkovChain, weights: np.ndarray, table: PathTable, fallback: float) -> np.ndarray:
    """P(conversion | the path's last state) of every path row under a fitted chain.

    Parameters
    ----------
    chain
        The chain fitted on the training fold.
    weights
        Its transition counts (:meth:`MarkovChain.pair_weights` of the training counts).
    table
        The rows to predict (same channels as the chain's table).
    fallback
        The prediction for a row whose last state never ended a training journey (the training
        conversion rate, in :func:`select_markov_order`).

    Returns
    -------
    numpy.ndarray
        float64, one probability per row of ``table``: the share of training journeys ending in that state
        that converted.
    """
    base = len(table.channels) + 1
    key = np.zeros(table.height, dtype=np.int64)
    ends = table.offsets[1:]
    for i in range(chain.order):
        idx = ends - chain.order + i
        valid = idx >= table.offsets[:-1]
        key = key * base + np.where(valid, table.codes[np.clip(idx, 0, None)] + 1, 0)
    s = chain.n_states
    conv = np.zeros(s)
    null = np.zeros(s)
    np.add.at(conv, chain.pair_src[chain.pair_dst == s], weights[chain.pair_dst == s])
    np.add.at(null, chain.pair_src[chain.pair_dst == s + 1], weights[chain.pair_dst == s + 1])
    pos = np.clip(np.searchsorted(chain.keys, key), 0, s - 1)
    known = (chain.keys[pos] == key) & (conv[pos] + null[pos] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known, conv[pos] / (conv[pos] + null[pos]), fallback)


def conversion_predict(model: ConversionModel, table: PathTable) -> np.ndarray:
    """p(journey) of every path row under a fitted conversion model (any form).

    Parameters
    ----------
    model
        A :class:`~optiq_engine.models.conversion.ConversionModel` (or a ``form="auto"`` candidate,
        :class:`~optiq_engine.models.conversion.JourneyModel`: anything with ``predict(table)``).
    table
        The rows to predict (same channels as the fit).

    Returns
    -------
    numpy.ndarray
        float64, one probability per row.
    """
    return model.predict(table)


def scores(p: np.ndarray, conversions: np.ndarray, nulls: np.ndarray) -> tuple[float, float]:
    """(log-loss, AUC) of predictions ``p`` for rows holding ``conversions`` and ``nulls`` journeys.

    Parameters
    ----------
    p
        Predicted conversion probability per row (clipped to [1e-12, 1 - 1e-12] for the log-loss).
    conversions, nulls
        Converting and non-converting journeys per row (weights: each journey counts once).

    Returns
    -------
    log_loss : float
        Mean per journey; NaN with no journey.
    auc : float
        Ties count one half; NaN without both a conversion and a null.
    """
    n = conversions.sum() + nulls.sum()
    q = np.clip(p, _EPS, 1 - _EPS)
    log_loss = float(-(conversions * np.log(q) + nulls * np.log(1 - q)).sum() / n) if n else float("nan")
    order = np.argsort(p, kind="stable")
    ps, pos, neg = p[order], conversions[order], nulls[order]
    _, start = np.unique(ps, return_index=True)
    pos_g, neg_g = np.add.reduceat(pos, start), np.add.reduceat(neg, start)
    below = np.concatenate([[0.0], np.cumsum(neg_g)[:-1]])
    total = pos.sum() * neg.sum()
    auc = float((pos_g * (below + 0.5 * neg_g)).sum() / total) if total else float("nan")
    return log_loss, auc


def select_markov_order(
    paths: Any, *, orders: Sequence[int] = (1, 2, 3, 4), folds: int = 5, seed: int = 0
) -> pl.DataFrame:
    """Held-out log-loss and AUC of the path conversion prediction of each Markov order.

    ``paths``: a :class:`PathTable`, a fitted model or an aggregated paths frame. The row with the best
    (lowest) log-loss has ``recommended = True`` (docs/data_driven.md §3).

    Parameters
    ----------
    paths
        A :class:`PathTable`, a fitted model (its ``paths``) or an aggregated paths frame in
        ChannelAttribution's format with the default column names (``path``, ``total_conversions``,
        ``total_null``; :meth:`PathTable.from_frame`). Equal paths are merged first.
    orders
        The Markov orders to compare (default 1 to 4).
    folds
        Number of folds (default 5).
    seed
        Seed of the fold split (default 0).

    Returns
    -------
    polars.DataFrame
        One row per order: ``order``, ``log_loss``, ``auc`` (means over the folds), ``recommended``.

    Raises
    ------
    ConfigError
        ``folds < 2``, or a paths frame that :meth:`PathTable.from_frame` refuses.
    InputError
        Invalid rows of a paths frame.
    ModelError
        An order with too many states to number.
    """
    table = _table(paths)
    splits = fold_tables(table, folds, seed)
    rows = []
    for order in orders:
        ll, auc = [], []
        for train, test in splits:
            chain = MarkovChain(train, order)
            w = chain.pair_weights(train.conversions, train.nulls)
            rate = train.conversions.sum() / max(train.conversions.sum() + train.nulls.sum(), 1.0)
            a, b = scores(markov_predict(chain, w, test, rate), test.conversions, test.nulls)
            ll.append(a)
            auc.append(b)
        rows.append({"order": order, "log_loss": float(np.mean(ll)), "auc": float(np.mean(auc))})
    frame = pl.DataFrame(rows)
    best = frame.get_column("log_loss").arg_min()
    return frame.with_columns(recommended=pl.int_range(pl.len()) == best)


def compare_conversion_models(
    paths: Any, *, markov_orders: Sequence[int] = (1, 2), folds: int = 5, seed: int = 0, l2: float = 1.0
) -> pl.DataFrame:
    """Held-out log-loss and AUC of DATA_DRIVEN's conversion model (both forms) and Markov chains.

    Parameters
    ----------
    paths
        A :class:`PathTable`, a fitted model (its ``paths``) or an aggregated paths frame in
        ChannelAttribution's format with the default column names (``path``, ``total_conversions``,
        ``total_null``; :meth:`PathTable.from_frame`). Equal paths are merged first.
    markov_orders
        The Markov orders compared too (default 1 and 2).
    folds
        Number of folds (default 5).
    seed
        Seed of the fold split (default 0; the same folds for every model).
    l2
        L2 penalty of the conversion models (default 1.0).

    Returns
    -------
    polars.DataFrame
        One row per model: ``model`` (``"DATA_DRIVEN (touch)"``, ``"DATA_DRIVEN (journey)"``,
        ``"MARKOV (order k)"``), ``log_loss``, ``auc``.

    Raises
    ------
    ConfigError, InputError
        As :func:`select_markov_order`.
    ModelError
        A conversion model that does not converge, or a training fold with no journey.
    """
    table = _table(paths)
    splits = fold_tables(table, folds, seed)
    rows = []
    for form in ("touch", "journey"):
        ll, auc = zip(
            *(
                scores(
                    conversion_predict(ConversionModel.fit(tr, l2=l2, rho=None, form=form), te),
                    te.conversions,
                    te.nulls,
                )
                for tr, te in splits
            ),
            strict=True,
        )
        rows.append({"model": f"DATA_DRIVEN ({form})", "log_loss": float(np.mean(ll)), "auc": float(np.mean(auc))})
    markov = select_markov_order(table, orders=markov_orders, folds=folds, seed=seed)
    for order, ll, auc in markov.select("order", "log_loss", "auc").iter_rows():
        rows.append({"model": f"MARKOV (order {order})", "log_loss": ll, "auc": auc})
    return pl.DataFrame(rows)


def calibration_table(fitted: FittedModel, *, bins: int = 10) -> pl.DataFrame:
    """Predicted vs observed conversion rate of a DATA_DRIVEN fit by decile of prediction (in sample).

    Parameters
    ----------
    fitted
        A DATA_DRIVEN fit (with ``form="auto"``, its ``conversion_model``: the candidate of largest BIC weight,
        not the weighted mixture).
    bins
        Number of bins of about equal journeys, by increasing prediction (default 10: deciles).

    Returns
    -------
    polars.DataFrame
        One row per bin: ``bin``, ``journeys``, ``predicted`` and ``observed`` conversion rates.

    Raises
    ------
    ConfigError
        ``fitted`` has no conversion model (not a DATA_DRIVEN fit).
    """
    model = getattr(fitted, "conversion_model", None)
    if model is None:
        raise ConfigError("calibration_table needs a DATA_DRIVEN fit")
    table = fitted.paths
    p = conversion_predict(model, table)
    n = table.conversions + table.nulls
    order = np.argsort(p, kind="stable")
    cum = np.cumsum(n[order])
    bin_of = np.minimum((cum - n[order] / 2) / cum[-1] * bins, bins - 1).astype(np.int64)
    frame = pl.DataFrame({"bin": bin_of, "p": p[order], "n": n[order], "conversions": table.conversions[order]})
    return (
        frame.group_by("bin")
        .agg(
            journeys=pl.col("n").sum(),
            predicted=(pl.col("p") * pl.col("n")).sum() / pl.col("n").sum(),
            observed=pl.col("conversions").sum() / pl.col("n").sum(),
        )
        .sort("bin")
    )
