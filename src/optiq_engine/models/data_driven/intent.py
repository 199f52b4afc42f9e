"""The intent term of a DATA_DRIVEN fit calibrated by experiments (docs/data_driven.md §6.1, "Calibration by
experiments"): what the lift tests reveal about the tested channels' confounding, spread to the other
channels along the main axis of how users' exposure differs (a substitute confounder, Wang & Blei 2019)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...kernels import journey_model as jm

if TYPE_CHECKING:
    from ...paths import PathTable

#: Ratio of a channel's own confounding variance to the shared factor's (``κ`` of docs/data_driven.md §6.1): the
#: shrinkage of the factor's effect when the tested channels load little on it.
FACTOR_SHRINKAGE = 0.05


def exposure_factor(table: PathTable, counts: np.ndarray, rho: float, sat: float) -> tuple[np.ndarray, np.ndarray]:
    """The first principal component of the journeys' exposure stocks (at their last touch, the model's stock
    shape), each channel's stock first freed of what the journey's length explains (``log m``), then
    standardised.

    Parameters
    ----------
    table
        The fitted path table.
    counts
        Journeys per path row (the weights).
    rho, sat
        The stock shape of the candidate (kernels/journey_model.py).

    Returns
    -------
    loading : numpy.ndarray
        float64[C], unit norm: the factor's loading on each channel's standardised stock (0 for a channel
        whose stock does not vary).
    scale : numpy.ndarray
        float64[C]: the standard deviation of each channel's residual stock (the standardisation; 0: none).
    """
    n_codes = len(table.channels)
    s0, s1, s2 = jm.stock_moments(table.offsets, table.codes, counts, n_codes, rho, sat)
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


def intent_held(
    observed: np.ndarray,
    calibrated: np.ndarray,
    tested: list[int],
    factor: tuple[np.ndarray, np.ndarray],
    parts: list[int],
) -> np.ndarray:
    """The intent term's effects (shaped as the parameters; the model's ``held``).

    Per part carrying channel effects (``parts``: the index of its first channel effect), the tested channels'
    bias in standardised units, ``Δ_e = (observed_e - calibrated_e) · scale_e``, gives the factor's effect
    ``λ = Σ_e loading_e Δ_e / (Σ_e loading_e² + κ)`` (the generalised least squares estimate with a channel's own
    bias ``κ`` times as variable as the factor's effect, :data:`FACTOR_SHRINKAGE`), and every channel's
    effect holds ``λ · loading_c / scale_c`` of intent.

    Parameters
    ----------
    observed, calibrated
        The candidate's parameters fitted without the experiments and calibrated by them.
    tested
        The tested channels' codes.
    factor
        :func:`exposure_factor` of the table.
    parts
        The parameter index of the first channel effect of each part in the model.

    Returns
    -------
    numpy.ndarray
        float64, shaped as the parameters: zero outside the parts' channel effects.
    """
    loading, scale = factor
    held = np.zeros(observed.shape[0])
    codes = np.array(sorted(set(tested)), dtype=np.int64)
    per_unit = np.divide(loading, scale, out=np.zeros_like(loading), where=scale > 0)
    for base in parts:
        delta = (observed[base + codes] - calibrated[base + codes]) * scale[codes]
        lam = float(loading[codes] @ delta) / (float(loading[codes] @ loading[codes]) + FACTOR_SHRINKAGE)
        held[base : base + loading.shape[0]] = lam * per_unit
    return held
