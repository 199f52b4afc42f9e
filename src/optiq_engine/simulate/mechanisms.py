"""The mechanisms of the independent simulator: channels, exposure model and response presets (docs/worlds.md).

Everything here is data: :data:`CHANNELS` with their exposure parameters, and :data:`PRESETS`, one
:class:`Mechanism` per name of ``worlds.MECHANISMS``. The formulas live in ``_kernels.py`` and docs/worlds.md §2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

__all__ = ["CHANNELS", "EXPOSURE", "HALF_LIFE_DAYS", "Mechanism", "Pair", "PRESETS", "Segment", "Threshold"]

Kind = Literal["end_counts", "end_decay", "touch_stock", "touch_decay"]

CHANNELS: tuple[str, ...] = (
    "direct",
    "organic_search",
    "paid_search",
    "google_ads",
    "meta_ads",
    "tiktok_ads",
    "display",
    "video",
    "email",
    "affiliate",
    "referral",
    "paid_social",
)
"""The 12 channels of every world (``paid_search`` plays brand search, ``paid_social`` retargeting)."""

#: channel -> (availability a_c, weight early in the journey e_c, weight late in the journey l_c)
EXPOSURE: MappingProxyType[str, tuple[float, float, float]] = MappingProxyType(
    {
        "direct": (1.00, 0.5, 3.0),
        "organic_search": (0.60, 1.0, 1.2),
        "paid_search": (0.30, 0.2, 0.8),
        "google_ads": (0.50, 0.8, 1.2),
        "meta_ads": (0.50, 1.5, 0.6),
        "tiktok_ads": (0.20, 1.0, 0.3),
        "display": (0.70, 2.5, 0.6),
        "video": (0.30, 1.2, 0.2),
        "email": (0.35, 0.2, 1.5),
        "affiliate": (0.10, 0.1, 0.5),
        "referral": (0.15, 0.3, 0.3),
        "paid_social": (0.25, 0.6, 0.8),
    }
)

#: Half-life (days) of a touch's effect in the decay mechanisms.
HALF_LIFE_DAYS: MappingProxyType[str, float] = MappingProxyType(
    {
        "direct": 1.0,
        "organic_search": 3.0,
        "paid_search": 2.0,
        "google_ads": 3.0,
        "meta_ads": 7.0,
        "tiktok_ads": 2.0,
        "display": 1.0,
        "video": 14.0,
        "email": 2.0,
        "affiliate": 1.0,
        "referral": 1.0,
        "paid_social": 5.0,
    }
)

#: Effects (log-odds) shared by several presets; direct, display and referral have none.
BASE_BETA: MappingProxyType[str, float] = MappingProxyType(
    {
        "organic_search": 0.30,
        "paid_search": 0.50,
        "google_ads": 0.60,
        "meta_ads": 0.40,
        "tiktok_ads": 0.20,
        "video": 0.25,
        "email": 0.50,
        "affiliate": 0.35,
        "paid_social": 0.30,
    }
)


def _scaled(factor: float, **overrides: float) -> dict[str, float]:
    out = {c: factor * b for c, b in BASE_BETA.items()}
    out.update(overrides)
    return out


@dataclass(frozen=True)
class Segment:
    """A group of users sharing a response: ``kind``, intercept ``alpha``, effects ``beta`` (channel -> log-odds),
    ``quad`` (channel -> κ of a ``-κ n²`` term, END_COUNTS only) and ``exposure`` (channel -> shift of the
    exposure log-weights and availability log-odds)."""

    name: str
    share: float
    kind: Kind
    alpha: float
    beta: dict[str, float]
    quad: dict[str, float] = field(default_factory=dict)
    exposure: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Pair:
    """A term ``beta`` added when both channels are touched (``together``) or when a touch of ``second``
    comes after a touch of ``first`` (``after``)."""

    first: str
    second: str
    beta: float
    type: Literal["together", "after"]


@dataclass(frozen=True)
class Threshold:
    """A term ``beta`` added once the touches of ``channels`` number at least ``k``."""

    channels: tuple[str, ...]
    k: int
    beta: float


@dataclass(frozen=True)
class Mechanism:
    """One preset: its segments and the shared parameters (docs/worlds.md §2)."""

    description: str
    segments: tuple[Segment, ...]
    intent_sd: float = 0.5  # σ_b: intent's loading on the baseline log-odds
    intent_exposure: dict[str, float] = field(default_factory=dict)  # γ_c: intent's loading on exposure
    transform: Literal["linear", "log2"] = "linear"
    rho: float = 0.5
    pairs: tuple[Pair, ...] = ()
    threshold: Threshold | None = None
    half_life_scale: float = 1.0  # multiplies every half-life of HALF_LIFE_DAYS


def _one(kind: Kind, alpha: float, beta: dict[str, float], **kw: dict[str, float]) -> tuple[Segment, ...]:
    return (Segment("all", 1.0, kind, alpha, beta, **kw),)


PRESETS: MappingProxyType[str, Mechanism] = MappingProxyType(
    {
        "touch_stock": Mechanism(
            "per-touch hazard with a saturating per-channel stock (rho 0.5): every touch is a decision point",
            _one("touch_stock", -4.4, _scaled(1.0)),
        ),
        "end_additive": Mechanism(
            "one decision after the last touch, logistic and additive in per-channel touch counts",
            _one("end_counts", -2.9, _scaled(0.5)),
        ),
        "end_interaction": Mechanism(
            "journey-end decision; meta_ads and google_ads do nothing alone, +1.5 log-odds together",
            _one("end_counts", -2.9, _scaled(0.5, meta_ads=0.0, google_ads=0.0)),
            pairs=(Pair("meta_ads", "google_ads", 1.5, "together"),),
        ),
        "end_saturation": Mechanism(
            "journey-end decision with diminishing repeats: beta_c log2(1 + n_c)",
            _one("end_counts", -3.0, _scaled(0.9)),
            transform="log2",
        ),
        "end_order": Mechanism(
            "journey-end decision; paid_search helps only after video, email only after meta_ads",
            _one("end_counts", -2.9, _scaled(0.5, paid_search=0.0, email=0.0)),
            pairs=(Pair("video", "paid_search", 1.2, "after"), Pair("meta_ads", "email", 1.0, "after")),
        ),
        "end_decay": Mechanism(
            "journey-end decision; each touch's effect halves every half-life (days) of its age at the decision",
            _one("end_decay", -2.9, _scaled(1.2)),
        ),
        "touch_decay": Mechanism(
            "per-touch hazard from past touches decaying with their age (half-lives in days), no user intent",
            _one("touch_decay", -4.2, _scaled(1.2)),
            intent_sd=0.0,
        ),
        "mixed": Mechanism(
            "half the users decide once at the journey's end (additive), half at every touch (saturating stock)",
            (
                Segment("end", 0.5, "end_counts", -2.9, _scaled(0.5)),
                Segment("touch", 0.5, "touch_stock", -4.4, _scaled(1.0)),
            ),
        ),
        "confounded": Mechanism(
            "journey-end decision; intent raises the baseline and the exposure to paid_search (brand search), "
            "email, paid_social (retargeting) and direct",
            _one("end_counts", -3.3, _scaled(0.8, paid_search=0.2, email=0.2, paid_social=0.1)),
            intent_sd=1.2,
            intent_exposure={"direct": 0.7, "paid_search": 1.0, "email": 1.0, "paid_social": 0.8},
            transform="log2",
        ),
        "threshold": Mechanism(
            "journey-end decision that needs >= 3 touches of google_ads, paid_search, email, meta_ads or video "
            "(+1.8 log-odds), plus small effects of organic_search and affiliate",
            _one("end_counts", -2.7, {"organic_search": 0.2, "affiliate": 0.3}),
            threshold=Threshold(("google_ads", "paid_search", "email", "meta_ads", "video"), 3, 1.8),
        ),
        "negative": Mechanism(
            "journey-end additive decision where display annoys (-0.15 per touch) and tiktok_ads helps once or "
            "twice but hurts when repeated (0.6 n - 0.15 n^2)",
            _one("end_counts", -2.7, _scaled(0.5, display=-0.15, tiktok_ads=0.6), quad={"tiktok_ads": 0.15}),
        ),
        "segments": Mechanism(
            "per-touch hazard with effects that differ by a latent segment: new users (70 %) respond to "
            "prospecting channels, returning users (30 %) to email and brand search, and see more of them",
            (
                Segment(
                    "new",
                    0.7,
                    "touch_stock",
                    -4.6,
                    {
                        "meta_ads": 0.7,
                        "video": 0.5,
                        "tiktok_ads": 0.4,
                        "google_ads": 0.6,
                        "organic_search": 0.2,
                        "affiliate": 0.3,
                    },
                ),
                Segment(
                    "returning",
                    0.3,
                    "touch_stock",
                    -3.9,
                    {"email": 0.9, "paid_search": 0.6, "organic_search": 0.5, "google_ads": 0.2, "affiliate": 0.3},
                    exposure={"email": 1.5, "direct": 0.7, "paid_search": 0.8},
                ),
            ),
            rho=0.6,
        ),
        "one_channel": Mechanism(
            "per-touch hazard where only google_ads works (0.8 log-odds, saturating); every other channel, "
            "however frequent or late, has no effect",
            _one("touch_stock", -4.1, {"google_ads": 0.8}),
        ),
        "recency": Mechanism(
            "journey-end decision driven by the last touches only: effects halve every 0.1 x the half-lives "
            "(2.4 h to 34 h), so what was seen just before deciding matters",
            _one("end_decay", -2.8, _scaled(2.0)),
            half_life_scale=0.1,
        ),
    }
)
