"""The pair and position terms of ``form="auto"``'s journey-end candidates (docs/data_driven.md §6.1,
"Pairs and positions"): chosen by forward selection on score tests, and fitted on the end decision alone (the journey
form's likelihood is the ending's times the decision's, so the ending's fit stands)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import scipy.stats

from ...kernels import journey_model as jm
from ...kernels import logistic as k
from ...kernels.threads import thread_count
from .journey_model import JourneyModel, _projected_newton

if TYPE_CHECKING:
    from ...paths import PathTable

#: Most pair and position terms a candidate's end decision takes.
MAX_PAIRS = 8
_PAIR_LEVEL = 0.01  # a term's score test, over all the features seen (Bonferroni)
_SELECTION_STEPS = 3  # Newton steps of the forward selection's refits (warm started; the candidates' fits converge)


def _once(made: dict | None, key: tuple, make: Callable[[], tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """``make()`` computed once per key in ``made`` (one :func:`pair_candidates` call's: the selection and
    the shapes reuse the end stocks and each term's paths; None: not kept)."""
    if made is None:
        return make()
    if key not in made:
        made[key] = make()
    return made[key]


def pair_candidates(
    table: PathTable,
    bases: list[JourneyModel],
    *,
    l2: float,
    counts: tuple[np.ndarray, np.ndarray],
) -> list[JourneyModel]:
    """The terms that the best of ``bases`` (journey-end candidates) singles out (:func:`select_terms`), with
    the journey-end candidate of every stock shape (:func:`with_terms`): a pair can stand for a shape
    (saturation is "more channels add less") and a shape for a pair, so each shape is weighed with them.
    The shapes' fits (serial kernels) run on :func:`~optiq_engine.kernels.threads.thread_count` threads."""
    best = min(bases, key=lambda c: c.bic)
    made: dict = {}
    found = select_terms(table, best, l2=l2, counts=counts, made=made)
    if found is None:
        return []
    terms, search = found

    def fit(base: JourneyModel) -> JourneyModel:
        return with_terms(table, base, terms, search, l2=l2, counts=counts, made=made)

    with ThreadPoolExecutor(max_workers=max(1, min(len(bases), thread_count()))) as pool:
        return list(pool.map(fit, bases))


def select_terms(
    table: PathTable,
    base: JourneyModel,
    *,
    l2: float,
    counts: tuple[np.ndarray, np.ndarray],
    made: dict | None = None,
) -> tuple[np.ndarray, float] | None:
    """The terms for ``base``'s end decision (``JourneyModel.pairs``) and ``log`` of the number of ways to
    choose them, or None. Each pair of channels seen together is a feature three ways: both touched ("a with
    b"), some ``a`` before some ``b`` ("a then b") and the reverse; each channel once: as the journey's first
    touch ("a first"; not as its last: the channel that ends a converting journey is what a per-touch
    conversion leaves, so a decision that read it could mimic one, as the ending may not either, docs §6.1).
    Forward selection, at most :data:`MAX_PAIRS` steps: each feature's score statistic at the current fit
    (``base``, then ``base`` refitted with the terms taken, a few Newton steps from the step before), ``U² /
    I`` with ``U = Σ (conversions - n q)`` and ``I = Σ n q (1 - q)`` over the paths where it holds
    (Rao 1948; the information not adjusted for the other effects, so the statistic errs low); the best
    feature with ``U > 0`` (synergy; effects stay non-negative), one per pair of channels (a position term is
    its own), is taken if its statistic is above ``log n + 2 log P`` (``P``: the features seen), the extended
    BIC's price of one more parameter chosen among ``P`` (Chen & Chen 2008), and above the ``χ²₁`` quantile
    of a test at level :data:`_PAIR_LEVEL` over ``P`` (Bonferroni: on few journeys the BIC's price alone is
    low). A candidate with them adds ``2 log C(P, k)`` to its BIC for the choice."""
    n_ch = len(table.channels)
    conv, null = counts
    n = conv + null
    fit, chosen, groups = base, np.zeros((0, 3), dtype=np.int64), set()
    cut, n_feats = math.inf, 0
    while n_ch >= 2 and chosen.shape[0] < MAX_PAIRS:
        q = decision_probability(table, fit, made)
        u_all, i_all = jm.pair_scores(table.offsets, table.codes, conv - n * q, n * q * (1 - q), n_ch)
        kind, a, b = np.nonzero(i_all > 0)
        if not chosen.shape[0]:  # the features seen, and the price of one, from the first pass
            n_feats = kind.shape[0]
            ebic = math.log(max(float(n.sum()), 2.0)) + 2.0 * math.log(max(n_feats, 1))
            cut = max(ebic, float(scipy.stats.chi2.isf(_PAIR_LEVEL / max(n_feats, 1), 1)))
        u, i = u_all[kind, a, b], i_all[kind, a, b]
        group = [
            (int(min(x, y)), int(max(x, y)) if x != y else -1 - int(t)) for t, x, y in zip(kind, a, b, strict=True)
        ]
        stat = np.array([v**2 / w if v > 0 and g not in groups else 0.0 for v, w, g in zip(u, i, group, strict=True)])
        j = int(np.argmax(stat)) if stat.shape[0] else -1
        if j < 0 or stat[j] <= cut:
            break
        groups.add(group[j])
        chosen = np.vstack([chosen, [a[j], b[j], kind[j]]]).astype(np.int64)
        fit = with_terms(table, base, chosen, 0.0, l2=l2, counts=counts, warm=fit, max_iter=_SELECTION_STEPS, made=made)
    if not chosen.shape[0]:
        return None
    n_k = chosen.shape[0]
    return chosen, math.lgamma(n_feats + 1) - math.lgamma(n_k + 1) - math.lgamma(n_feats - n_k + 1)


def with_terms(
    table: PathTable,
    base: JourneyModel,
    terms: np.ndarray,
    search: float,
    *,
    l2: float,
    counts: tuple[np.ndarray, np.ndarray],
    warm: JourneyModel | None = None,
    max_iter: int = 200,
    made: dict | None = None,
) -> JourneyModel:
    """``base`` (a journey-end candidate fitted on ``counts``) with the end-decision ``terms`` (``(a, b,
    kind)`` rows, ``JourneyModel.pairs``): the decision's intercept, channel effects and term effects
    refitted (penalised logistic on the paths' end stocks and the terms, effects non-negative, projected
    Newton), the ending's parameters and log-likelihood kept (they do not depend on the decision's).
    ``warm``: ``base`` with the first terms of ``terms``, to start from (the forward selection's last step);
    ``max_iter``: Newton steps at most; ``made``: features already computed (:func:`_once`)."""
    n_ch, n_terms = len(table.channels), terms.shape[0]
    conv, null = counts
    start = warm if warm is not None else base
    c = start.n_codes
    done = start.pairs.shape[0]
    x0 = np.concatenate([start.params[1 + c : 2 + c + n_ch + done], np.zeros(n_terms - done)])
    feats = decision_features(table, base, terms, made)
    bounded = np.arange(x0.shape[0]) > 0
    scale = max(float(conv.sum() + null.sum()), 1.0)
    x = _projected_newton(
        lambda v: k.logistic_loss_grad(v, *feats, conv, null, l2),
        lambda v: k.logistic_hessian(v, *feats, conv, null, l2),
        x0,
        bounded,
        scale,
        max_iter=max_iter,
    )
    c = base.n_codes
    before = k.logistic_loss_grad(
        base.params[1 + c : 2 + c + n_ch], *decision_features(table, base, terms[:0], made), conv, null, 0.0
    )[0]
    after = k.logistic_loss_grad(x, *feats, conv, null, 0.0)[0]
    params = _with_term_slots(base.params, n_ch, n_terms)
    width = n_ch + n_terms
    params[1 + width : 2 + 2 * width] = x
    return JourneyModel(
        params,
        "journey",
        base.rho,
        base.nll - before + after,
        base.n_params + n_terms,
        base.n_journeys,
        base.sat,
        None,
        base.half_life,
        terms,
        search,
        base.half_lives,
    )


def decision_features(
    table: PathTable, model: JourneyModel, terms: np.ndarray, made: dict | None = None
) -> tuple[np.ndarray, ...]:
    """Per path, the end decision's features as CSR ``(offsets, code, value)``: its channels' stocks at its
    last touch (``model``'s stock shape) and, for each of ``terms`` that holds in it, code ``C + t``, value 1."""
    n_ch = len(table.channels)
    decay = model.decays(table)
    off, code, value = _once(
        made,
        ("stocks", model.rho, model.sat, model.half_life, model.half_lives),
        lambda: jm.end_stocks(table.offsets, table.codes, n_ch, decay, model.sat),
    )
    rows = [np.repeat(np.arange(table.height), np.diff(off))]
    codes, values = [code], [value]
    for t, (a, b, kind) in enumerate(terms.tolist()):
        (held,) = _once(made, ("term", a, b, kind), functools.partial(_term_paths, table, (a, b, kind)))
        rows.append(held)
        codes.append(np.full(held.shape[0], n_ch + t, dtype=code.dtype))
        values.append(np.ones(held.shape[0]))
    row = np.concatenate(rows)
    order = np.argsort(row, kind="stable")
    offsets = np.zeros(table.height + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=table.height), out=offsets[1:])
    return offsets, np.concatenate(codes)[order], np.concatenate(values)[order]


def _term_paths(table: PathTable, term: tuple[int, int, int]) -> tuple[np.ndarray]:
    """The paths where ``term`` ``(a, b, kind)`` holds."""
    kernel_term = np.array([term[0], term[1], 0, term[2]], dtype=np.int64)
    return (np.flatnonzero(jm.term_holds(table.offsets, table.codes, kernel_term, len(table.channels))),)


def decision_probability(table: PathTable, model: JourneyModel, made: dict | None = None) -> np.ndarray:
    """``q`` per path: the end decision's conversion probability of a journey-end ``model``."""
    off, code, value = decision_features(table, model, model.pairs, made)
    c = model.n_codes
    rows = np.repeat(np.arange(table.height), np.diff(off))
    z = model.params[1 + c] + np.bincount(rows, weights=model.params[2 + c + code] * value, minlength=table.height)
    return 1.0 / (1.0 + np.exp(-z))


def _with_term_slots(params: np.ndarray, n_ch: int, n_terms: int) -> np.ndarray:
    """``params`` of ``n_ch`` channels with ``n_terms`` zero slots after the channels of each block."""
    ending = 2 + 2 * n_ch + jm.N_BUCKETS
    blocks = [params[:1], params[1 : 1 + n_ch], params[1 + n_ch : 2 + n_ch], params[2 + n_ch : 2 + 2 * n_ch]]
    blocks += [params[2 + 2 * n_ch : ending], params[ending : ending + n_ch], params[ending + n_ch :]]
    zeros = np.zeros(n_terms)
    out: list[np.ndarray] = []
    for i, block in enumerate(blocks):
        out += [block, zeros] if i in (1, 3, 5, 6) else [block]
    return np.concatenate(out)
