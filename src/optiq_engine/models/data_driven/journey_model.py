"""One candidate of ``form="auto"``: the whole-journey model (kernels/journey_model.py) with its form and
stock shape, :class:`JourneyModel`, and its penalised maximum-likelihood fit (:func:`_fit_one`)."""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import scipy.linalg
import scipy.optimize

from ...errors import ModelError
from ...kernels import journey_model as jm
from ...kernels import logistic as k
from ...kernels.paths import GAP_DAYS
from .intent import exposure_factor, intent_posterior
from .likelihood import Likelihood

if TYPE_CHECKING:
    from ...paths import PathTable

_PIN_ROUNDS = 3  # a calibrated fit: rounds of (set the tested effects, refit the others)
#: The fits stop once a Newton step would gain less than this in log-likelihood (or ``1e-8`` per journey, if
#: less): the parameters are then within about ``sqrt(2 · 1e-4)`` = 0.014 standard errors of the optimum (in
#: the Hessian's metric).
_DECREMENT = 1e-4


def shape_label(rho: float, sat: float, half_life: float = math.inf, own: str = "") -> str:
    """``"touch counts"``, ``"stock decaying x0.7 per touch"``, ``"repeats saturating x0.7"``, ``"channel
    presence"`` (saturation 0) or ``"effects halving every 3 days"`` (``own``: the channels with their own
    half-lives, :meth:`JourneyModel.half_lives_label`, added in brackets)."""
    parts = [f"stock decaying x{rho:g} per touch"] if rho != 1.0 else []
    parts += [f"repeats saturating x{sat:g}" if sat > 0.0 else "channel presence"] if sat != 1.0 else []
    if math.isfinite(half_life):
        parts += [f"effects halving every {half_life:.2g} days" + (f" ({own})" if own else "")]
    return ", ".join(parts) or "touch counts"


_ROWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per untimed table: its all-zero decay rows
_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per table: its (path, channel) layout


def step_decays(
    table: PathTable, rho: float, half_life: float, half_lives: tuple[float, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The decays of kernels/journey_model.py for ``table``: ``(rows, factors)``, the stock of channel ``c``
    multiplied by ``factors[rows[j], c]`` before touch ``j`` is added: ``rho``, times ``2^(-gap / half_life)``
    on a timed table (``rows``: the touches' gap buckets, docs/data_driven.md §2; ``math.inf``: no decay in
    time). ``half_lives``: one per channel code instead (a candidate whose channels have their own,
    docs/data_driven.md §6.1)."""
    n_codes = len(table.channels)
    if math.isfinite(half_life):
        if table.gaps is None:
            raise ModelError("a half-life in days needs a timed path table (DATA_DRIVEN's, with touch times)")
        days = np.full(max(n_codes, 1), half_life) if half_lives is None else np.asarray(half_lives, dtype=np.float64)
        return table.gaps, rho * np.exp2(-GAP_DAYS[:, None] / days[None, :])
    if table.gaps is not None:
        return table.gaps, np.full((GAP_DAYS.shape[0], max(n_codes, 1)), rho)
    if table not in _ROWS:
        _ROWS[table] = np.zeros(table.codes.shape[0], dtype=np.int8)
    return _ROWS[table], np.full((1, max(n_codes, 1)), rho)


class JourneyModel:
    """One fitted candidate of ``form="auto"``: the whole-journey model with its form and stock decay.

    Parameters
    ----------
    params, form, rho, nll, n_params, n_journeys
        The attributes below.
    sat
        The attribute below; default 1.0 (no saturation).
    half_life
        The attribute below; default ``math.inf`` (no decay in time).
    held
        The attribute below; default None (no intent term).
    pairs, pair_search, half_lives
        The attributes below; default none.

    Attributes
    ----------
    params
        ``[b_h, β_h (C), b_p, β_p (C), g (N_BUCKETS), γ (C), γ' (C)]`` (kernels/journey_model.py).
    form
        ``"touch"`` (hazard part only), ``"journey"`` (end decision only) or ``"both"``.
    rho
        Per-touch decay of the exposure stock (1: counts).
    sat
        Saturation of repeats: the k-th touch of a channel adds ``sat**(k-1)`` to its stock (1: none).
    half_life
        Days in which a touch's effect halves (timed path tables only; ``math.inf``: none).
    half_lives
        None (every channel halves in ``half_life``) or one per channel code: channels with their own
        half-lives (:func:`~optiq_engine.models.data_driven.form_choice.own_half_lives`); each that differs from
        ``half_life`` is a parameter of the fit.
    nll
        Negative log-likelihood (without the penalty) on the fitted counts.
    n_params, n_journeys
        Free parameters and journeys, for ``bic = 2 nll + n_params log(n_journeys)``.
    held
        Shaped as ``params``: the intent term of a fit calibrated by experiments (``intent.intent_posterior``), the
        part of the channels' observed effects that is the users' intent. The likelihood reads
        ``params + held``; the channels' effects, their credit and holdout effects are ``params``, with
        ``held`` in every coalition's baseline. Zeros: none.
    pairs
        int64 ``(P, 3)``: the end part's pair and position terms (docs/data_driven.md §6.1, "Pairs"), channels
        ``a``, ``b`` and kind: ``θ`` added to the end decision's logit when both channels are in the journey
        (kind 0, "a with b"), some touch of ``a`` came before some touch of ``b`` (kind 1, "a then b"), the
        journey's first touch is ``a`` (kind 2, "a first", ``b = a``). Their parameters follow
        the ``C`` channels' in each block of ``params`` (so ``n_codes`` is ``C + P``).
    pair_search
        ``log`` of the number of ways the pairs could have been chosen: the extended BIC's term
        (``bic`` adds twice it; Chen & Chen 2008).
    """

    def __init__(
        self,
        params: np.ndarray,
        form: str,
        rho: float,
        nll: float,
        n_params: int,
        n_journeys: float,
        sat: float = 1.0,
        held: np.ndarray | None = None,
        half_life: float = math.inf,
        pairs: np.ndarray | None = None,
        pair_search: float = 0.0,
        half_lives: tuple[float, ...] | None = None,
    ) -> None:
        self.params = params
        self.half_lives = half_lives
        self.pairs = np.zeros((0, 3), dtype=np.int64) if pairs is None else pairs
        self.pair_search = pair_search
        self.held = np.zeros_like(params) if held is None else held
        self.form = form
        self.rho = rho
        self.sat = sat
        self.half_life = half_life
        self.nll = nll
        self.n_params = n_params
        self.n_journeys = n_journeys

    def derived(
        self,
        params: np.ndarray,
        *,
        held: np.ndarray,
        nll: float | None = None,
        n_params: int | None = None,
        n_journeys: float | None = None,
        pairs: np.ndarray | None = None,
        half_lives: tuple[float, ...] | None = None,
    ) -> JourneyModel:
        """The same form and stock shape with other parameters (and fit statistics, pairs and per-channel
        half-lives, default this model's)."""
        return JourneyModel(
            params,
            self.form,
            self.rho,
            self.nll if nll is None else nll,
            self.n_params if n_params is None else n_params,
            self.n_journeys if n_journeys is None else n_journeys,
            self.sat,
            held,
            self.half_life,
            self.pairs if pairs is None else pairs,
            self.pair_search,
            self.half_lives if half_lives is None else half_lives,
        )

    def decays(self, table: PathTable) -> tuple[np.ndarray, np.ndarray]:
        """The decays of ``table``'s touches under this model's stock shape (:func:`step_decays`)."""
        return step_decays(table, self.rho, self.half_life, self.half_lives)

    def half_lives_label(self, channels: tuple[str, ...]) -> str:
        """``"video 8.5, email 2.1"``: the channels whose half-lives differ from ``half_life``, in days."""
        if self.half_lives is None:
            return ""
        return ", ".join(
            f"{ch} {h:.2g}" for ch, h in zip(channels, self.half_lives, strict=False) if h != self.half_life
        )

    @property
    def use_h(self) -> bool:
        return self.form in ("touch", "both")

    @property
    def use_p(self) -> bool:
        return self.form in ("journey", "both")

    @property
    def bic(self) -> float:
        return 2.0 * self.nll + self.n_params * float(np.log(max(self.n_journeys, 2.0))) + 2.0 * self.pair_search

    @property
    def n_codes(self) -> int:
        """Channels and pairs: the size of each per-channel block of ``params``."""
        return int(jm.n_codes_of(self.params.shape[0]))

    @property
    def n_channels(self) -> int:
        return self.n_codes - self.pairs.shape[0]

    def pair_slots(self) -> np.ndarray:
        """``(a, b, parameter index of θ, kind)`` per pair: the kernels' ``pairs``."""
        slots = 2 + self.n_codes + self.n_channels + np.arange(self.pairs.shape[0], dtype=np.int64)
        pairs = self.pairs.astype(np.int64)
        return np.column_stack([pairs[:, :2], slots, pairs[:, 2]]).reshape(-1, 4)

    def pair_names(self, channels: tuple[str, ...]) -> list[str]:
        """``"a with b"``, ``"a then b"`` or ``"a first"`` per term (``channels``: the fitted
        ones, in code order)."""
        return [
            f"{channels[a]} {('with', 'then')[kind]} {channels[b]}" if kind < 2 else f"{channels[a]} first"
            for a, b, kind in self.pairs
        ]

    @property
    def intercept(self) -> float:
        """The intercept of the part that carries the channel effects (touch part when present)."""
        return float(self.params[0] if self.use_h else self.params[1 + self.n_codes])

    @property
    def beta(self) -> np.ndarray:
        c, n = self.n_codes, self.n_channels
        return self.params[1 : 1 + n].copy() if self.use_h else self.params[2 + c : 2 + c + n].copy()

    def label(self, channels: tuple[str, ...] | None = None) -> str:
        """``"journey-end decision, touch counts"``; with its terms (``channels``: the fitted ones, which name
        them; else their number): ``"..., with b then d, e first"``."""
        names = {"touch": "per-touch hazard", "journey": "journey-end decision", "both": "hazard + journey-end"}
        n = self.pairs.shape[0]
        terms = ", ".join(self.pair_names(channels)) if channels is not None else f"{n} pair or position terms"
        own = self.half_lives_label(channels) if channels is not None else ""
        return f"{names[self.form]}, {shape_label(self.rho, self.sat, self.half_life, own)}" + (
            f", with {terms}" if n else ""
        )

    def path_shapley(
        self,
        table: PathTable,
        *,
        samples: int,
        seed: int,
        used: np.ndarray | None = None,
    ) -> tuple[np.ndarray, int]:
        """Shapley values per (path, distinct channel in first-occurrence order).

        Parameters
        ----------
        table
            A path table whose channel codes are those of the model (:meth:`for_channels` maps them).
        samples
            Orderings sampled for paths with more than
            :data:`~optiq_engine.kernels.logistic.EXACT_MAX_CHANNELS` distinct channels.
        seed
            Seed of those samples.
        used
            Per path, whether its values are computed (the others get zeros); default all.

        Returns
        -------
        phi : numpy.ndarray
            float64, one value per (path, distinct channel).
        sampled : int
            The number of paths whose values were sampled.
        """
        used = np.ones(table.height, dtype=bool) if used is None else used
        phi, sampled = jm.nested_shapley(
            table.offsets,
            table.codes,
            self.params,
            self.held,
            self.decays(table),
            self.sat,
            self.use_h,
            self.use_p,
            self.pair_slots(),
            table.hashes,
            samples,
            seed,
            used,
        )
        return phi, int(sampled)

    def predict(self, table: PathTable, *, drop: int = -1) -> np.ndarray:
        """P(convert | path) of every row of ``table`` (``drop``: a channel code whose effect is removed).

        Parameters
        ----------
        table
            A path table whose channel codes are those of the model.
        drop
            A channel code whose effect is removed; default -1: none.

        Returns
        -------
        numpy.ndarray
            float64, one probability per path row.
        """
        return jm.nested_predict(
            table.offsets,
            table.codes,
            self.params,
            self.held,
            self.decays(table),
            self.sat,
            self.use_h,
            self.use_p,
            self.pair_slots(),
            drop,
        )

    def for_channels(self, channels: tuple[str, ...], fitted: tuple[str, ...]) -> JourneyModel:
        """The same model with its channel coefficients re-indexed for ``channels`` (0 for unseen ones).

        Parameters
        ----------
        channels
            The channel names of the table to apply the model to.
        fitted
            The channel names the model was fitted on (its coefficients' order).

        Returns
        -------
        JourneyModel
            A new model; intercepts and ending terms unchanged, ``nll`` and BIC those of the fit.
        """
        names = tuple(f"\x00{name}" for name in self.pair_names(fitted))  # a pair: a channel of the blocks
        kept = [i for i, (a, b, _) in enumerate(self.pairs) if fitted[a] in channels and fitted[b] in channels]
        pairs = [[channels.index(fitted[a]), channels.index(fitted[b]), kind] for a, b, kind in self.pairs[kept]]
        new = channels + tuple(names[i] for i in kept)
        params, held = (_reindexed(v, new, fitted + names) for v in (self.params, self.held))
        own = None
        if self.half_lives is not None:  # by name; a channel the fit did not see has no effect to decay
            days = dict(zip(fitted, self.half_lives, strict=True))
            own = tuple(days.get(ch, self.half_life) for ch in channels)
        return self.derived(params, held=held, pairs=np.array(pairs, dtype=np.int64).reshape(-1, 3), half_lives=own)

    def coefficients(self, channels: tuple[str, ...]) -> pl.DataFrame:
        """``part`` (touch / journey / intent / ending), ``term`` and ``coef`` of the parts in the model.

        Parameters
        ----------
        channels
            The fitted channel names, in code order.

        Returns
        -------
        polars.DataFrame
            The touch and journey parts the form uses, the intent term of a calibrated fit (per channel, the part
            of its observed effect that is intent, on the first part's scale), then the ending terms (by position,
            by funnel stage, by last channel and by the channel before it).
        """
        c, n = self.n_codes, len(channels)
        rows: list[tuple[str, str, float]] = []
        if self.use_h:
            rows += [("touch", "(intercept)", float(self.params[0]))]
            rows += [("touch", ch, float(self.params[1 + i])) for i, ch in enumerate(channels)]
        if self.use_p:
            rows += [("journey", "(intercept)", float(self.params[1 + c]))]
            rows += [("journey", ch, float(self.params[2 + c + i])) for i, ch in enumerate(channels)]
            rows += [
                ("journey", name, float(self.params[2 + c + n + i])) for i, name in enumerate(self.pair_names(channels))
            ]
        if self.held.any():
            base = 1 if self.use_h else 2 + c
            rows += [("intent", ch, float(self.held[base + i])) for i, ch in enumerate(channels)]
        labels = ["1", "2", "3", "4", "5", "6", "7-8", "9-12", "13-20", "21+"]
        rows += [("ending", f"position {b}", float(self.params[2 + 2 * c + i])) for i, b in enumerate(labels)]
        rows += [
            ("ending", f"position {b}, funnel stage {s + 1} of {jm.N_STAGES}", float(self.params[2 + 2 * c + at]))
            for s in range(1, jm.N_STAGES)
            for i, b in enumerate(labels)
            for at in [s * jm.N_POSITIONS + i]
        ]
        ending = 2 + 2 * c + jm.N_BUCKETS
        rows += [("ending", f"after {ch}", float(self.params[ending + i])) for i, ch in enumerate(channels)]
        rows += [
            ("ending", f"after {ch} and one more touch", float(self.params[ending + c + i]))
            for i, ch in enumerate(channels)
        ]
        part, term, coef = zip(*rows, strict=True)
        return pl.DataFrame({"part": list(part), "term": list(term), "coef": list(coef)})

    def calibrated(
        self,
        table: PathTable,
        targets: list[_Target],
        *,
        l2: float,
        counts: tuple[np.ndarray, np.ndarray] | None = None,
        rng: np.random.Generator | None = None,
    ) -> JourneyModel:
        """The model calibrated by experiments (docs/data_driven.md §6.1, "Calibration by experiments"): a probe
        fit meets every test exactly (:func:`_probe_fit`), which gives each tested channel's bias; the biases'
        posterior (:func:`.intent.intent_posterior`) gives the intent term, spread along the exposure factor,
        and how far each test is met (all the way unless its error is of the order of a log-odds per standard
        deviation of exposure); the model is then fitted again with that intent term held and each test's
        result, so moved, met.

        Parameters
        ----------
        table
            The path table the model was fitted on.
        targets
            The experiments resolved against ``table``.
        l2
            L2 penalty on the channel coefficients.
        counts
            Converting and non-converting journeys per row; default: the table's.
        rng
            When given, the intent term's factor effect is drawn from its posterior (a bootstrap replicate,
            :func:`.intent.intent_posterior`); default: its posterior mean.

        Returns
        -------
        JourneyModel
            Refitted from this model's parameters, same form and stock shape, with its ``held`` intent term.

        Raises
        ------
        ModelError
            The optimisation ends on non-finite parameters; no effect of a tested channel gives its test's
            result.
        """
        counts = (table.conversions, table.nulls) if counts is None else counts
        codes = sorted({t.code for t in targets})
        c = self.n_codes
        parts = ([1] if self.use_h else []) + ([2 + c] if self.use_p else [])
        factor = exposure_factor(table, counts[0] + counts[1], self.decays(table), self.sat)
        scale = np.where(factor[1] > 0, factor[1], 1.0)
        probe = _probe_fit(self, table, targets, l2=l2, counts=counts, scale=scale, refuse=rng is None)
        lifts = [_lift(self, table, t, self.params)[0] for t in targets]  # the observational fit's holdout effects
        bias, noise = _test_biases(self, probe, table, targets, lifts, codes, scale)
        noise[factor[1][codes] <= 0] = np.inf  # no exposure variation: the factor cannot be read there
        held, own = intent_posterior(bias, noise, codes, factor, parts, self.params.shape[0], rng)
        # each test met as far as its own posterior bias goes (all the way unless its error is of order τ)
        kept = np.clip(np.divide(own, bias, out=np.ones_like(bias), where=bias != 0), 0.0, 1.0)
        moved = [
            replace(t, value=lift + kept[codes.index(t.code)] * (t.value - lift))
            for t, lift in zip(targets, lifts, strict=True)
        ]
        return _probe_fit(self, table, moved, l2=l2, counts=counts, scale=scale, held=held, refuse=rng is None)


def _probe_fit(
    model: JourneyModel,
    table: PathTable,
    targets: list[_Target],
    *,
    l2: float,
    counts: tuple[np.ndarray, np.ndarray],
    scale: np.ndarray,
    held: np.ndarray | None = None,
    refuse: bool = True,
) -> JourneyModel:
    """``model`` refitted with ``held`` in the likelihood (default none) and the tests' results imposed
    (``refuse``: a result far below what no effect gives is an error; off for a bootstrap replicate's draws):
    :data:`_PIN_ROUNDS` rounds of (shift the tested channels' effects until their holdout effects meet their
    tests, :func:`_pin`; refit the untested parameters by maximum likelihood), ending on a shift."""
    held = np.zeros_like(model.params) if held is None else held
    fixed = np.concatenate([_effect_slots(model, code) for code in sorted({t.code for t in targets})])
    fit = model.derived(model.params - held, held=held)
    for _ in range(_PIN_ROUNDS):
        start = _pin(fit, table, targets, fit.params, scale, refuse)
        fit = _fit_one(
            table,
            model.form,
            model.rho,
            l2=l2,
            counts=counts,
            start=start,
            sat=model.sat,
            half_life=model.half_life,
            half_lives=model.half_lives,
            held=held,
            fixed=fixed,
            pairs=model.pairs,
            pair_search=model.pair_search,
        )
    params = _pin(fit, table, targets, fit.params, scale, refuse)
    nll, _ = Likelihood.of(table, model.decays(table), model.sat, counts, model.pairs).terms(
        params + held, model.use_h, model.use_p, 0.0
    )
    return model.derived(params, held=held, nll=float(nll), n_params=fit.n_params, n_journeys=fit.n_journeys)


def _test_biases(
    observed: JourneyModel,
    probe: JourneyModel,
    table: PathTable,
    targets: list[_Target],
    lifts: list[float],
    codes: list[int],
    scale: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per tested channel (``codes``), the bias its tests reveal and its standard error, in standardised
    log-odds: ``Δ = -δ``, ``δ`` the shift of the channel's effects (every part alike) from the ``observed`` fit
    to the ``probe`` (the fit with the tests' results imposed by shifts, the other parameters refitted), and
    ``std_error / |dL/dδ|`` with the slope along that same path: the secant ``|L_observed - L_probe| / |δ|``
    (the refit absorbs part of each shift, so the slope at fixed other parameters would overstate how
    precisely a test fixes ``δ``), the slope at the probe where the shift is nil; tests of one channel
    combined by inverse variance. ``lifts``: each test's holdout effect under ``observed``."""
    bias = np.array(
        [(observed.params[s[0]] - probe.params[s[0]]) * scale[c] for c in codes for s in [_effect_slots(observed, c)]]
    )
    info = np.zeros(len(codes))
    for t, lift in zip(targets, lifts, strict=True):
        i = codes.index(t.code)
        at_probe, grad = _lift(probe, table, t, probe.params)
        gap = lift - at_probe
        if abs(bias[i]) > 1e-9 and gap != 0.0:
            slope = abs(gap) / abs(bias[i])
        else:
            slope = float(grad[_effect_slots(probe, t.code)].sum()) / scale[t.code]
        info[i] += (slope / t.std_error) ** 2
    return bias, np.divide(1.0, np.sqrt(info), out=np.full(len(codes), np.inf), where=info > 0)


def _reindexed(v: np.ndarray, channels: tuple[str, ...], fitted: tuple[str, ...]) -> np.ndarray:
    """Parameters ``v`` (ordered as ``fitted``) re-indexed for ``channels``, 0 for the unseen ones."""
    index = {c: i for i, c in enumerate(fitted)}
    c_old, c_new = len(fitted), len(channels)
    b = jm.N_BUCKETS
    out = np.zeros(2 + 4 * c_new + b)
    out[0] = v[0]
    out[1 + c_new] = v[1 + c_old]
    out[2 + 2 * c_new : 2 + 2 * c_new + b] = v[2 + 2 * c_old : 2 + 2 * c_old + b]
    for i, c in enumerate(channels):
        if c in index:
            out[1 + i] = v[1 + index[c]]
            out[2 + c_new + i] = v[2 + c_old + index[c]]
            out[2 + 2 * c_new + b + i] = v[2 + 2 * c_old + b + index[c]]
            out[2 + 3 * c_new + b + i] = v[2 + 3 * c_old + b + index[c]]
    return out


@dataclass(frozen=True)
class _Target:
    """An experiment resolved against a table: channel code, journeys of its period per row, result."""

    code: int
    weights: np.ndarray
    value: float
    std_error: float


def _active(form: str, n_codes: int, n_pairs: int = 0) -> np.ndarray:
    """Indices of the parameters that ``form`` uses (``n_codes``: channels and pairs, the last ``n_pairs`` of
    each block pairs, which only the end part reads)."""
    n = n_codes - n_pairs  # the channels
    ending = 2 + 2 * n_codes + jm.N_BUCKETS
    idx = list(range(2 + 2 * n_codes, ending))  # the ending, in every form
    idx += list(range(ending, ending + n)) + list(range(ending + n_codes, ending + n_codes + n))
    if form in ("touch", "both"):
        idx += list(range(0, 1 + n))
    if form in ("journey", "both"):
        idx += list(range(1 + n_codes, 2 + 2 * n_codes))
    return np.array(sorted(idx), dtype=np.int64)


def _start(table: PathTable, counts: tuple[np.ndarray, np.ndarray], n_pairs: int = 0) -> np.ndarray:
    """Starting point: empirical ending rates by position, the per-touch and per-journey conversion rates."""
    n_codes = len(table.channels) + n_pairs
    conv, null = counts
    n = conv + null
    lengths = np.diff(table.offsets)
    x = np.zeros(2 + 4 * n_codes + jm.N_BUCKETS)
    touches = float(np.dot(lengths, n))
    rate_t = min(max(conv.sum() / max(touches, 1.0), 1e-6), 1 - 1e-6)
    rate_j = min(max(conv.sum() / max(n.sum(), 1.0), 1e-6), 1 - 1e-6)
    x[0] = np.log(rate_t / (1 - rate_t))
    x[1 + n_codes] = np.log(rate_j / (1 - rate_j))
    m_max = int(lengths.max()) if lengths.shape[0] else 1
    at = np.bincount(lengths, weights=n, minlength=m_max + 2)  # journeys of each length
    reach = at[::-1].cumsum()[::-1]  # journeys with length >= position
    ended = np.zeros(jm.N_BUCKETS)
    passed = np.zeros(jm.N_BUCKETS)
    for pos in range(1, m_max + 1):
        b = jm.bucket(pos)
        ended[b] += at[pos]
        passed[b] += reach[pos]
    rate_e = np.clip((ended + 0.5) / (passed + 1.0), 1e-4, 1 - 1e-4)
    x[2 + 2 * n_codes : 2 + 2 * n_codes + jm.N_BUCKETS] = np.log(rate_e / (1 - rate_e))
    return x


def _damped_solve(hess: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """``(H + λI)⁻¹ g``, λ = 0 when ``H`` is positive definite, else grown until it is (Levenberg-Marquardt)."""
    lam, eye = 0.0, np.eye(hess.shape[0])
    floor = 1e-9 * max(float(np.abs(np.diag(hess)).max(initial=0.0)), 1.0)
    while True:
        try:
            return scipy.linalg.cho_solve(scipy.linalg.cho_factor(hess + lam * eye), grad)
        except np.linalg.LinAlgError:
            lam = max(4.0 * lam, floor)


def _projected_newton(terms, second, x0: np.ndarray, bounded: np.ndarray, scale: float, *, max_iter: int) -> np.ndarray:
    """Minimise subject to ``x[bounded] >= 0`` by projected Newton steps (Bertsekas 1982; docs/data_driven.md
    §6.1): the bounded parameters at (or within ε of) 0 that the gradient pushes down take a scaled gradient
    step (to 0), the others a damped Newton step (:func:`_damped_solve`); the step is projected onto the
    bounds and halved until the loss decreases; it stops when the Newton decrement is below
    :data:`_DECREMENT` (or the projected gradient below ``1e-8`` per journey). One loop, whatever the bounds
    do: no rounds of holding and releasing effects (which can cycle). ``second(x) -> (loss, grad, hess)``
    (one pass over the table) at each full step, ``terms(x) -> (loss, grad)`` at the halved ones."""
    x = np.where(bounded, np.maximum(x0, 0.0), x0)
    loss, grad, hess = second(x)
    for _ in range(max_iter):
        at_bound = bounded & (grad > 0)
        projected = np.where(at_bound & (x <= 0), 0.0, grad)
        if np.abs(projected).max(initial=0.0) < 1e-8 * scale:
            break
        curvature = np.maximum(np.diag(hess), 1e-12 * scale)
        gap = np.where(bounded, x - np.maximum(x - grad / curvature, 0.0), grad / curvature)
        eps = min(1e-3, float(np.abs(gap).max()))  # Bertsekas' ε: the held set settles near the optimum
        held = at_bound & (x <= eps)
        free = np.flatnonzero(~held)
        step = np.where(held, grad / curvature, 0.0)  # the held ones: a scaled gradient step, projected to 0
        step[free] = _damped_solve(hess[np.ix_(free, free)], grad[free])
        if float(grad[free] @ step[free]) < 2.0 * min(_DECREMENT, 1e-8 * scale):  # the Newton decrement
            x = np.where(held, 0.0, x)  # the held effects within ε of 0 where the next step would put them
            break
        t, new_hess = 1.0, None
        while True:
            cand = x - t * step
            cand[bounded] = np.maximum(cand[bounded], 0.0)
            if t == 1.0:  # a full step is usually taken: its Hessian in the same pass
                new_loss, new_grad, new_hess = second(cand)
            else:
                new_loss, new_grad = terms(cand)
            if new_loss <= loss or t < 1e-10:
                break
            t *= 0.5
        if not new_loss <= loss:
            break
        decrease = loss - new_loss
        x, loss, grad = cand, new_loss, new_grad
        if decrease < 1e-12 * scale:
            break
        hess = new_hess if t == 1.0 else second(x)[2]
    if not np.all(np.isfinite(x)):
        raise ModelError("DATA_DRIVEN: the conversion model did not converge")
    return x


def _fit_one(
    table: PathTable,
    form: str,
    rho: float,
    *,
    l2: float,
    counts: tuple[np.ndarray, np.ndarray],
    start: np.ndarray,
    max_iter: int = 200,
    sat: float = 1.0,
    half_life: float = math.inf,
    held: np.ndarray | None = None,
    fixed: np.ndarray | None = None,
    pairs: np.ndarray | None = None,
    pair_search: float = 0.0,
    half_lives: tuple[float, ...] | None = None,
) -> JourneyModel:
    """Penalised maximum likelihood of one candidate, the channel effects non-negative, by projected Newton
    steps (:func:`_projected_newton`; exact Hessian, damped where "both" is not convex). ``held``: an intent
    term added to the parameters in the likelihood (JourneyModel); ``fixed``: parameter indices kept at their
    ``start`` values (the effects that experiments pinned); ``pairs``, ``pair_search``: the end part's pair
    effects (JourneyModel; their effects non-negative too); ``half_lives``: per channel (JourneyModel)."""
    pairs = np.zeros((0, 3), dtype=np.int64) if pairs is None else pairs
    n_codes = len(table.channels) + pairs.shape[0]
    conv, null = counts
    held = np.zeros_like(start) if held is None else held
    keep = np.zeros(start.shape[0], dtype=bool)
    if fixed is not None:
        keep[fixed] = True
    all_active = _active(form, n_codes, pairs.shape[0])
    active = all_active[~keep[all_active]]
    use_h, use_p = form in ("touch", "both"), form in ("journey", "both")
    scale = max(float(conv.sum() + null.sum()), 1.0)
    # the stock's shape was chosen too
    n_free = int(all_active.shape[0]) + (rho != 1.0) + (sat != 1.0) + math.isfinite(half_life)
    n_free += 0 if half_lives is None else sum(h != half_life for h in half_lives)
    like = Likelihood.of(table, step_decays(table, rho, half_life, half_lives), sat, counts, pairs)
    is_beta = ((active >= 1) & (active <= n_codes)) | ((active >= 2 + n_codes) & (active < 2 + 2 * n_codes))
    full = start.copy()
    sel = np.ix_(active, active)

    def newton_terms(sub: np.ndarray) -> tuple[float, np.ndarray]:
        full[active] = sub
        loss, grad = like.terms(full + held, use_h, use_p, l2)
        return loss, grad[active]

    def newton_second(sub: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        full[active] = sub
        loss, grad, hess = like.hessian(full + held, use_h, use_p, l2)
        return loss, grad[active], hess[sel]

    full[active] = _projected_newton(
        newton_terms, newton_second, start[active].copy(), is_beta, scale, max_iter=max_iter
    )
    loss, _ = like.terms(full + held, use_h, use_p, 0.0)
    return JourneyModel(
        full.copy(), form, rho, float(loss), n_free, float(scale), sat, held, half_life, pairs, pair_search, half_lives
    )


def _effect_slots(model: JourneyModel, code: int) -> np.ndarray:
    """The parameter indices of channel ``code``'s effects in the parts of ``model``'s form."""
    c = model.n_codes
    return np.array(([1 + code] if model.use_h else []) + ([2 + c + code] if model.use_p else []), dtype=np.int64)


def _pin(
    model: JourneyModel, table: PathTable, targets: list[_Target], params: np.ndarray, scale: np.ndarray, refuse: bool
) -> np.ndarray:
    """``params`` with each tested channel's effects shifted, all its parts by one amount ``x / scale[channel]``
    (``x`` in standardised log-odds), each clipped at 0 (effects stay non-negative), so that its holdout effects
    meet its tests: the root of ``Σ_t (L_t(x) - result_t) / std_error_t²`` over the channel's tests (one test:
    its result exactly), by Brent's method, or no effect at all where the tests ask for less
    (:func:`_refuse_below_zero` when ``refuse``); two passes, as the tests' lifts depend a little on each other."""
    params = params.copy()
    for _ in range(2):
        for code in sorted({t.code for t in targets}):
            tests = [t for t in targets if t.code == code]
            slots = _effect_slots(model, code)
            entry = params[slots].copy()

            def gap(x: float, tests=tests, slots=slots, entry=entry, step=1.0 / scale[code]) -> float:
                params[slots] = np.maximum(entry + x * step, 0.0)
                return sum((_lift(model, table, t, params)[0] - t.value) / t.std_error**2 for t in tests)

            lo = float(-np.max(entry) * scale[code])  # from this shift down every effect is 0 (each clipped there)
            if gap(lo) >= 0:  # no non-negative effect lifts as little as the tests say: the nearest is kept
                if refuse:  # a bootstrap replicate's drawn result may fall far below 0: met with no effect there
                    _refuse_below_zero(table.channels[code], tests, [_lift(model, table, t, params)[0] for t in tests])
                continue
            hi = 1.0
            while gap(hi) < 0:  # each a pass over the channel's paths
                if hi >= 2.0**30:
                    msg = _UNREACHABLE.format(", ".join(f"{t.value:,.1f}" for t in tests))
                    raise ModelError(f"DATA_DRIVEN experiment on channel {table.channels[code]!r}: {msg}")
                hi *= 2.0
            gap(scipy.optimize.brentq(gap, lo, hi, xtol=1e-12, rtol=1e-10))
    return params


#: A test this many standard errors below the least holdout effect of non-negative effects is refused.
_BELOW_ZERO_Z = 3.0
_UNREACHABLE = "no effect of the channel gives its incremental_conversions ({}) over the test's journeys"


def _refuse_below_zero(channel: str, tests: list[_Target], least: list[float]) -> None:
    """Raise :class:`ModelError` if a test of ``channel`` is more than :data:`_BELOW_ZERO_Z` standard errors below
    ``least``, the holdout effect over its journeys of the channel's smallest non-negative effects (a test
    about that far below is met as nearly as they allow: the checks' ``z`` shows the rest)."""
    for t, low in zip(tests, least, strict=True):
        if low - t.value > _BELOW_ZERO_Z * t.std_error:
            raise ModelError(
                f"DATA_DRIVEN experiment on channel {channel!r}: its result {t.value:,.1f} ± {t.std_error:,.1f} is "
                f"{(low - t.value) / t.std_error:.1f} standard errors below {low:,.1f}, the least incremental "
                "conversions any non-negative effect of the channel gives over the test's journeys; effects are "
                "non-negative (a touch never lowers the conversion probability): check the result's sign and "
                "units, or leave the test out"
            )


def _lift(model: JourneyModel, table: PathTable, t: _Target, params: np.ndarray) -> tuple[float, np.ndarray]:
    """The holdout effect of ``t``'s channel over its journeys under ``model`` with ``params``, and its gradient."""
    value, grad, _ = jm.nested_lift(
        params,
        model.held,
        table.offsets,
        table.codes,
        t.weights,
        model.decays(table),
        model.sat,
        model.use_h,
        model.use_p,
        model.pair_slots(),
        t.code,
    )
    return value, grad


def _incremental(table: PathTable, phi: np.ndarray, counts: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per channel, φ (per path and distinct channel) summed over the journeys of ``counts``: the expected
    incremental conversions."""
    if table not in _LAYOUTS:
        _LAYOUTS[table] = k.count_features(table.offsets, table.codes, len(table.channels), 0.0)[:2]
    off, code = _LAYOUTS[table]
    n_rows = np.repeat(counts[0] + counts[1], np.diff(off))
    return np.bincount(code, weights=phi * n_rows, minlength=len(table.channels))
