"""A robust anomaly test for daily series (used by ``CLICK_ANOMALY`` alert rules).

The modified z-score of Iglewicz and Hoaglin (1993): with ``m`` the median of the baseline and
``MAD`` the median absolute deviation from it,

    z = (x - m) / (1.4826 * MAD)

(1.4826 makes ``1.4826 * MAD`` estimate the standard deviation of normal data; they recommend flagging
``|z| > 3.5``). Median and MAD ignore up to half the baseline being outliers, so one past spike does not
hide the next. When more than half the baseline is identical, MAD is 0; then the mean absolute deviation
from the median is used, ``z = (x - m) / (1.2533 * MeanAD)`` (1.2533 = sqrt(pi/2), the same normal
consistency). When that is 0 too (a flat baseline), any departure is infinitely anomalous and ``z`` is
``+inf`` / ``-inf`` (0 when ``x == m``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RobustScore", "robust_zscore", "MAD_SCALE", "MEANAD_SCALE"]

MAD_SCALE = 1.4826
MEANAD_SCALE = 1.2533


@dataclass(frozen=True)
class RobustScore:
    """The modified z-score of ``value`` against a baseline, with what it was computed from.

    Made by :func:`robust_zscore`.

    Parameters
    ----------
    value
        The value scored.
    median
        The baseline's median.
    scale
        The robust standard deviation used (0 for a flat baseline).
    z
        ``(value - median) / scale``; for a flat baseline 0 when ``value`` equals the median, else ±inf.
    method
        ``"mad"`` (1.4826 x the median absolute deviation), ``"meanad"`` (1.2533 x the mean absolute
        deviation, when the MAD is 0) or ``"flat"`` (both 0).
    """

    value: float
    median: float
    scale: float  # the robust standard deviation used (0 for a flat baseline)
    z: float
    method: str  # "mad", "meanad" or "flat"

    def is_anomaly(self, threshold: float, direction: str = "both") -> bool:
        """Whether ``|z| >= threshold`` in the given direction (``both``, ``spike``: up, ``drop``: down).

        Parameters
        ----------
        threshold
            The |z| at which a value is an anomaly (> 0).
        direction
            ``"both"`` (default), ``"spike"`` (``z >= threshold``) or ``"drop"`` (``z <= -threshold``); any other
            value counts as ``"both"``.

        Returns
        -------
        bool
        """
        if direction == "spike":
            return self.z >= threshold
        if direction == "drop":
            return self.z <= -threshold
        return abs(self.z) >= threshold


def robust_zscore(value: float, baseline: Sequence[float]) -> RobustScore:
    """The modified z-score of ``value`` against ``baseline`` (at least one value).

    Parameters
    ----------
    value
        The value scored (e.g. today's clicks).
    baseline
        The reference values (e.g. the previous days' clicks); at least one.

    Returns
    -------
    RobustScore

    Raises
    ------
    ValueError
        An empty ``baseline``.

    Examples
    --------
    >>> s = robust_zscore(300, [100, 102, 98, 101, 99, 500, 100])
    >>> round(s.z, 1), s.method
    (134.9, 'mad')
    """
    if not baseline:
        raise ValueError("the baseline needs at least one value")
    m = statistics.median(baseline)
    mad = statistics.median(abs(b - m) for b in baseline)
    if mad > 0:
        scale, method = MAD_SCALE * mad, "mad"
    else:
        mean_ad = statistics.fmean(abs(b - m) for b in baseline)
        scale, method = MEANAD_SCALE * mean_ad, "meanad" if mean_ad > 0 else "flat"
    z = (value - m) / scale if scale > 0 else 0.0 if value == m else math.copysign(math.inf, value - m)
    return RobustScore(value=float(value), median=float(m), scale=float(scale), z=float(z), method=method)
