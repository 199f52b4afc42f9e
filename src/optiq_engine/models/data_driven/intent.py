"""The intent term of a DATA_DRIVEN fit calibrated by experiments (docs/data_driven.md §6.1, "Calibration by
experiments"): what the lift tests reveal about the tested channels' confounding, spread to the other
channels along the main axis of how users' exposure differs (a substitute confounder, Wang & Blei 2019)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...kernels import journey_model as jm

if TYPE_CHECKING:
    from ...paths import PathTable

#: Prior standard deviation of the exposure factor's effect on conversions when there is one (``τ``, log-odds per
#: standard deviation of the factor), docs/data_driven.md §6.1.
FACTOR_SD = 1.0
#: Variance of a tested channel's own confounding, not shared through the factor (``ω²``, standardised log-odds):
#: ``ω = 0.1``, a tenth of ``τ``: confounding is taken to be mostly shared (one latent intent).
CHANNEL_VARIANCE = 0.01
#: Prior probability that the users' exposure and conversions share a confounder at all.
PRIOR_CONFOUNDED = 0.5


def exposure_factor(
    table: PathTable, counts: np.ndarray, decay: tuple[np.ndarray, np.ndarray], sat: float
) -> tuple[np.ndarray, np.ndarray]:
    """The first principal component of the journeys' exposure stocks (at their last touch, the model's stock
    shape), each channel's stock first freed of what the journey's length explains (``log m``), then
    standardised.

    Parameters
    ----------
    table
        The fitted path table.
    counts
        Journeys per path row (the weights).
    decay, sat
        The stock shape of the candidate: its per-touch decays (``JourneyModel.decays``) and saturation
        (kernels/journey_model.py).

    Returns
    -------
    loading : numpy.ndarray
        float64[C], unit norm: the factor's loading on each channel's standardised stock (0 for a channel
        whose stock does not vary).
    scale : numpy.ndarray
        float64[C]: the standard deviation of each channel's residual stock (the standardisation; 0: none).
    """
    n_codes = len(table.channels)
    s0, s1, s2 = jm.stock_moments(table.offsets, table.codes, counts, n_codes, decay, sat)
    if s0 <= 1.0 or n_codes == 0:
        return np.zeros(n_codes), np.zeros(n_codes)
    mean = s1 / s0
    cov = s2 / s0 - np.outer(mean, mean)
    var_len = cov[-1, -1]
    resid = cov[:-1, :-1] - (np.outer(cov[:-1, -1], cov[:-1, -1]) / var_len if var_len > 1e-12 else 0.0)
    scale = np.sqrt(np.clip(np.diag(resid), 0.0, None))
    live = scale > 1e-9
    corr = np.zeros_like(resid)
    corr[np.ix_(live, live)] = resid[np.ix_(live, live)] / np.outer(scale[live], scale[live])
    _, vectors = np.linalg.eigh(corr)
    loading = vectors[:, -1] * live
    norm = float(np.linalg.norm(loading))
    return (loading / norm if norm > 0 else loading), np.where(live, scale, 0.0)


def intent_posterior(
    bias: np.ndarray,
    noise: np.ndarray,
    tested: list[int],
    factor: tuple[np.ndarray, np.ndarray],
    parts: list[int],
    n_params: int,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The intent term's effects (the model's ``held``) and the tested channels' own biases, from their tests.

    The biases the tests measure, ``Δ̂_e`` (standardised log-odds: the shift of the channel's effects, in every
    part, that takes the observational fit to the test's result), are modelled as ``Δ̂_e = λ loading_e + ε_e +
    η_e``: the shared factor's effect ``λ``, the channel's own confounding ``ε_e ~ N(0, ω²)``
    (:data:`CHANNEL_VARIANCE`) and the test's error ``η_e ~ N(0, σ_e²)`` (``σ_e = noise_e``). The prior on ``λ`` is a
    spike and slab: ``λ = 0`` (no shared confounder) or ``λ ~ N(0, τ²)`` (:data:`FACTOR_SD`), probability 1/2 each
    (:data:`PRIOR_CONFOUNDED`). ``λ̂`` is its posterior mean (the slab's posterior mean times the slab's posterior
    probability; with ``rng``, a draw from its posterior instead, for a bootstrap replicate): every channel's
    effect holds ``λ̂ · loading_c / scale_c`` of intent, in every part. A tested
    channel's own bias is ``λ̂ loading_e + τ² / (τ² + σ_e²) (Δ̂_e - λ̂ loading_e)`` (its own part given the
    factor's prior scale ``τ``, not ``ω``: a test is met within its error, and only a test whose error is
    of the order of ``τ``, a log-odds per standard deviation of exposure, moves its channel less).

    Parameters
    ----------
    bias, noise
        Per tested channel, ``Δ̂_e`` and ``σ_e`` (standardised log-odds).
    tested
        The tested channels' codes (distinct, aligned with ``bias``).
    factor
        :func:`exposure_factor` of the table.
    parts
        The parameter index of the first channel effect of each part in the model.
    n_params
        The length of the parameter vector.
    rng
        When given, ``λ`` is drawn from its posterior (the spike with its posterior probability, else the slab's
        normal posterior) instead of taken at its mean: the intent term's own uncertainty in an interval.

    Returns
    -------
    held : numpy.ndarray
        float64[n_params]: zero outside the parts' channel effects.
    own : numpy.ndarray
        Per tested channel, its posterior bias (standardised log-odds).
    """
    loading, scale = factor
    v = loading[np.asarray(tested, dtype=np.int64)]
    var = CHANNEL_VARIANCE + noise**2
    precision = float(v @ (v / var)) + 1.0 / FACTOR_SD**2
    mean = float(v @ (bias / var)) / precision
    # Bayes factor of the slab against the spike: N(Δ; 0, D + τ² v vᵀ) / N(Δ; 0, D), D = diag(var)
    log_bf = 0.5 * mean**2 * precision - 0.5 * np.log(FACTOR_SD**2 * precision)
    odds = PRIOR_CONFOUNDED / (1.0 - PRIOR_CONFOUNDED) * np.exp(min(log_bf, 700.0))
    p_slab = odds / (1.0 + odds)
    lam = p_slab * mean  # the posterior mean
    if rng is not None:  # a draw: the spike, or the slab's normal posterior
        lam = rng.normal(mean, 1.0 / np.sqrt(precision)) if rng.random() < p_slab else 0.0
    per_unit = np.divide(loading, scale, out=np.zeros_like(loading), where=scale > 0)
    held = np.zeros(n_params)
    for base in parts:
        held[base : base + loading.shape[0]] = lam * per_unit
    return held, lam * v + FACTOR_SD**2 / (FACTOR_SD**2 + noise**2) * (bias - lam * v)
