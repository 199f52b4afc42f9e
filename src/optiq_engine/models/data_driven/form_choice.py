"""How ``form="auto"`` chooses its form: the candidates (forms x stock shapes) fitted on the journeys (or a
thinned sample of them) and weighted by BIC (docs/data_driven.md §6.1)."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numba
import numpy as np

from ...errors import ModelError
from .journey_model import JourneyModel, _fit_one, _start
from .likelihood import PARALLEL_ROWS
from .pair_terms import pair_candidates

if TYPE_CHECKING:
    from ...paths import PathTable

#: Candidate per-touch decays of the exposure stock that ``form="auto"`` chooses among (1: touch counts), on
#: paths without times.
AUTO_DECAYS = (1.0, 0.7, 0.4)
#: Saturations of repeats among the candidates of ``form="auto"`` (with counts, ``rho = 1``); 0: the channel's
#: presence alone (repeats add nothing), the representation of the classical logistic and Shapley attribution
#: models (docs/data_driven.md §6.1).
AUTO_SATURATIONS = (0.7, 0.4, 0.0)
#: Half-lives in days among the candidates of ``form="auto"`` on timed path tables (with counts).
AUTO_HALF_LIVES = (1.0, 3.0, 10.0)
#: Half-lives (as factors of each form's best of :data:`AUTO_HALF_LIVES`) also among the candidates.
NEARBY_HALF_LIVES = (0.5**0.5, 2**0.5)
#: The stock shapes ``(rho, sat, half_life)`` of the candidates on paths without times: the decays per touch
#: with no saturation, then the saturations with counts.
AUTO_SHAPES = tuple((rho, 1.0, math.inf) for rho in AUTO_DECAYS) + tuple(
    (1.0, sat, math.inf) for sat in AUTO_SATURATIONS
)
#: On timed paths: counts, the saturations, then the half-lives in days in place of the decays per touch
#: (which only approximate them, and absorbed misfit where they stayed: docs/data_driven.md §6.1).
TIMED_SHAPES = (
    ((1.0, 1.0, math.inf),)
    + tuple((1.0, sat, math.inf) for sat in AUTO_SATURATIONS)
    + tuple((1.0, 1.0, h) for h in AUTO_HALF_LIVES)
)
#: Factors tried on one channel's half-life at a time (:func:`own_half_lives`), then half as far again.
OWN_HALF_LIFE_STEPS = (0.5, 2.0)
#: Newton steps of a trial of one channel's own half-life (from the candidate: the first step's gain).
_OWN_TRIAL_STEPS = 1
#: The forms of the whole-journey model that ``form="auto"`` compares.
AUTO_FORMS = ("touch", "journey", "both")  # "both" at the best pure decay only

_MIN_WEIGHT = 1e-3  # candidates below this BIC weight are left out of the average
#: Journeys above which ``form="auto"`` chooses its form on a thinned sample of this size.
SELECT_JOURNEYS = 200_000
_THINNING_REPLICATE = 0x5E1EC7  # the Poisson stream of the thinning (not a bootstrap replicate number)
_REFIT_STEPS = 12  # projected Newton steps of the full-data refit after the choice on a sample


def fit_candidates(
    table: PathTable,
    *,
    l2: float,
    counts: tuple[np.ndarray, np.ndarray],
    warm: list[JourneyModel] | None = None,
    pairs: bool = True,
) -> list[JourneyModel]:
    """The candidates of ``form="auto"``: the pure forms (``touch``, ``journey``) at every stock shape of
    :data:`AUTO_SHAPES` (timed tables: :data:`TIMED_SHAPES` and the half-lives near each form's best), then the
    nested form (``both``) at the shape of the best pure one, then (``pairs``) the journey-end candidates
    with the pair and position terms their residuals single out (:func:`.pair_terms.pair_candidates`), if any.

    ``warm``: the candidates of a previous fit to start from (the bootstrap); the same forms, decays and pairs.
    """
    if float(counts[0].sum() + counts[1].sum()) == 0:
        raise ModelError("DATA_DRIVEN: no journeys to fit on")
    if warm is not None:
        return _each(table, lambda w: _refit(w, table, l2=l2, counts=counts), warm)
    timed = table.gaps is not None

    def shapes(form: str) -> list[JourneyModel]:  # each shape starts from the form's previous fit (fewer steps)
        fits, start = [], _start(table, counts)
        for rho, sat, half_life in TIMED_SHAPES if timed else AUTO_SHAPES:
            fits.append(
                _fit_one(
                    table,
                    form,
                    rho,
                    l2=l2,
                    counts=counts,
                    start=start,
                    sat=sat,
                    half_life=half_life,
                )
            )
            start = fits[-1].params
        timed_fits = [f for f in fits if math.isfinite(f.half_life)]
        if timed_fits:  # the half-lives around the form's best one
            fits += _nearby_half_lives(table, min(timed_fits, key=lambda f: f.bic), l2=l2, counts=counts)
        return fits

    out = [c for fits in _each(table, shapes, ["touch", "journey"]) for c in fits]
    best = min(out, key=lambda c: c.bic)
    if math.isfinite(best.half_life):  # the channels' own half-lives, where the data ask for them
        own = own_half_lives(table, best, l2=l2, counts=counts)
        out += [own] if own is not best else []
        best = own
    shape = _shape_of(best)

    def at_shape(form: str) -> JourneyModel:
        same = [c for c in out if c.form == form and _shape_of(c) == shape]
        if same:
            return same[0]
        near = min((c for c in out if c.form == form), key=lambda c: c.bic)  # a refined half-life of the other form
        return _fit_one(table, form, l2=l2, counts=counts, start=near.params, **shape)

    touch, journey = at_shape("touch"), at_shape("journey")
    start = touch.params.copy()  # the two pure fits together
    c = len(table.channels)
    start[1 + c : 2 + 2 * c] = journey.params[1 + c : 2 + 2 * c]
    pure = min((touch, journey), key=lambda m: m.nll)  # not concave: also from the better pure fit
    starts = [start, _nudge(pure, form=pure.form)]
    both, alt = _each(table, lambda x: _fit_one(table, "both", l2=l2, counts=counts, start=x, **shape), starts)
    ends = [c for c in out if c.form == "journey"]
    paired = pair_candidates(table, ends, l2=l2, counts=counts) if pairs else []
    return [*out, alt if alt.nll < both.nll else both, *paired]


def _shape_of(model: JourneyModel) -> dict:
    """The stock shape of ``model``: :func:`_fit_one`'s keywords for it, comparable with ``==``."""
    return {"rho": model.rho, "sat": model.sat, "half_life": model.half_life, "half_lives": model.half_lives}


def own_half_lives(
    table: PathTable, model: JourneyModel, *, l2: float, counts: tuple[np.ndarray, np.ndarray]
) -> JourneyModel:
    """``model`` (a candidate with a half-life in days) with some channels' own half-lives, or ``model``.

    Channels differ in how long a touch acts (a video is remembered for weeks, a display impression for a
    day: the per-channel carryover of marketing-mix models); one half-life for all puts the misfit
    elsewhere, in the nested form's second part most of all (docs/data_driven.md §6.1). Each channel with an
    effect is tried at its half-life times :data:`OWN_HALF_LIFE_STEPS` (:data:`_OWN_TRIAL_STEPS` Newton
    steps from ``model``); the channels whose better trial gains more than the BIC's price of a parameter
    (``log(n) / 2`` of log-likelihood) take it together and the candidate is refitted; those are tried
    again half as far on in the same direction (``2^(±1/2)``), kept where that gains, and refitted. Each
    channel with its own half-life is a parameter (``JourneyModel.n_params``); returned only if its BIC is
    lower."""
    n_ch = len(table.channels)
    effects = model.params[1 : 1 + n_ch] + model.params[2 + model.n_codes : 2 + model.n_codes + n_ch]
    price = 0.5 * math.log(max(float(counts[0].sum() + counts[1].sum()), 2.0))

    def fit(start: JourneyModel, days: np.ndarray, max_iter: int = 200) -> JourneyModel:
        at = start.derived(start.params, held=start.held, half_lives=tuple(days.tolist()))
        return _refit(at, table, l2=l2, counts=counts, max_iter=max_iter)

    def moves(ref: JourneyModel, days: np.ndarray, items: list[tuple[int, float]], need: float) -> dict[int, float]:
        """Per channel, the factor of its best trial if that gains more than ``need`` over ``ref``."""

        def gain(item: tuple[int, float]) -> float:
            trial = days.copy()
            trial[item[0]] *= item[1]
            return ref.nll - fit(ref, trial, _OWN_TRIAL_STEPS).nll

        best: dict[int, tuple[float, float]] = {}
        for (code, factor), g in zip(items, _each(table, gain, items), strict=True):
            if g > need and g > best.get(code, (0.0, 0.0))[0]:
                best[code] = (g, factor)
        return {code: factor for code, (_, factor) in best.items()}

    days = np.full(n_ch, model.half_life)
    first = moves(
        model, days, [(c, f) for c in np.flatnonzero(effects > 0).tolist() for f in OWN_HALF_LIFE_STEPS], price
    )
    if not first:
        return model
    for code, factor in first.items():
        days[code] *= factor
    own = fit(model, days)
    further = moves(own, days, [(c, math.sqrt(f)) for c, f in first.items()], 0.0)
    if further:
        for code, factor in further.items():
            days[code] *= factor
        own = fit(own, days)
    return own if own.bic < model.bic else model


def _refit(
    model: JourneyModel, table: PathTable, *, l2: float, counts: tuple[np.ndarray, np.ndarray], max_iter: int = 200
) -> JourneyModel:
    """``model``'s candidate (form, stock shape, terms) fitted on ``counts``, starting from its parameters."""
    return _fit_one(
        table,
        model.form,
        model.rho,
        l2=l2,
        counts=counts,
        start=model.params,
        max_iter=max_iter,
        sat=model.sat,
        half_life=model.half_life,
        half_lives=model.half_lives,
        pairs=model.pairs,
        pair_search=model.pair_search,
    )


def _nearby_half_lives(
    table: PathTable, grid_best: JourneyModel, *, l2: float, counts: tuple[np.ndarray, np.ndarray]
) -> list[JourneyModel]:
    """``grid_best`` (a candidate with a half-life of :data:`AUTO_HALF_LIVES`) refitted at the half-lives
    :data:`NEARBY_HALF_LIVES` times its own, each warm-started from it: the likelihood is often flat in the
    half-life while the shares are not, so the average weighs the half-lives near the best by their evidence
    instead of taking one."""
    return [
        _fit_one(
            table,
            grid_best.form,
            grid_best.rho,
            l2=l2,
            counts=counts,
            start=grid_best.params,
            sat=grid_best.sat,
            half_life=grid_best.half_life * f,
        )
        for f in NEARBY_HALF_LIVES
    ]


def _each(table: PathTable, fit, items: list):
    """``[fit(item) for item in items]``, two at a time on threads when ``table`` is small enough for the
    serial kernels (they release the GIL; above it each likelihood pass already spreads over every core,
    :mod:`~optiq_engine.kernels.threads`). The fits are independent: the results do not depend on the
    threads."""
    workers = min(len(items), numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    if workers < 2 or table.height >= PARALLEL_ROWS:
        return [fit(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fit, items))


def choose_candidates(
    table: PathTable, *, l2: float, seed: int, pairs: bool = True
) -> tuple[list[JourneyModel], np.ndarray]:
    """The candidates and their BIC weights. Above :data:`SELECT_JOURNEYS` journeys the choice is made on a
    Poisson-thinned sample of that size (each path's counts drawn from ``Poisson(f · count)``, keyed by the
    path hash), then the candidates with weight above 0.001 are refitted on every journey (warm started)
    and weighted again among themselves; the others keep their sample fit and weight 0."""
    counts = (table.conversions, table.nulls)
    total = float(counts[0].sum() + counts[1].sum())
    if total <= SELECT_JOURNEYS:
        candidates = fit_candidates(table, l2=l2, counts=counts, pairs=pairs)
        return candidates, bic_weights([c.bic for c in candidates])
    from ...kernels.bootstrap import poisson_counts

    f = SELECT_JOURNEYS / total
    conv, null = poisson_counts(table.hashes, counts[0] * f, counts[1] * f, seed, _THINNING_REPLICATE)
    keep = np.flatnonzero(conv + null > 0)
    sample = _rows_of(table, keep)
    trial = fit_candidates(sample, l2=l2 * f, counts=(conv[keep], null[keep]), pairs=pairs)
    w = bic_weights([c.bic for c in trial])
    chosen = [i for i in range(len(trial)) if w[i] > _MIN_WEIGHT]
    # from the sample's optimum a few Newton steps suffice
    refit = {i: _refit(trial[i], table, l2=l2, counts=counts, max_iter=_REFIT_STEPS) for i in chosen}
    full_w = bic_weights([refit[i].bic for i in chosen])
    weights = np.zeros(len(trial))
    weights[chosen] = full_w
    return [refit.get(i, c) for i, c in enumerate(trial)], weights


def _rows_of(table: PathTable, rows: np.ndarray) -> PathTable:
    """The path table restricted to ``rows`` (same channels)."""
    from ...paths import PathTable as _PathTable

    lengths = np.diff(table.offsets)[rows]
    offsets = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    idx = np.repeat(table.offsets[rows] - offsets[:-1], lengths) + np.arange(offsets[-1])
    return _PathTable(
        channels=table.channels,
        offsets=offsets,
        codes=table.codes[idx],
        conversions=table.conversions[rows],
        nulls=table.nulls[rows],
        value_micros=table.value_micros[rows],
        hashes=table.hashes[rows],
        distinct=table.distinct,
        gaps=None if table.gaps is None else table.gaps[idx],
    )


def _nudge(model: JourneyModel, *, form: str) -> np.ndarray:
    """Start the nested form from a pure fit, the missing part nearly switched off."""
    x = model.params.copy()
    c = model.n_codes
    if form == "touch":
        x[1 + c] = -8.0
    else:
        x[0] = -8.0
    return x


def bic_weights(bic: list[float]) -> np.ndarray:
    """``exp(-ΔBIC / 2)`` normalised: the approximate posterior probabilities of the candidates."""
    b = np.asarray(bic, dtype=np.float64)
    w = np.exp(-(b - b.min()) / 2.0)
    return w / w.sum()
