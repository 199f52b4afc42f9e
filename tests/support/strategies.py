"""Hypothesis strategies: small random attribution inputs in the reference's plain-Python form."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

from tests.reference.attribution import MICROS_PER_DAY

T0 = 1_700_000_000_000_000
I63 = 2**63 - 1
CHANNELS = ("direct", "email", "google_ads", "display", "organic_search")
ID_ALPHABET = "abAB09_-é€"


@dataclass
class Case:
    touchpoints: list[dict]
    conversions: list[dict]
    models: list[tuple[str, dict]]
    lookback_us: int
    reset_after_conversion: bool
    group_by: tuple[str, ...] = ("anon_id",)
    direct_channels: tuple[str, ...] = ("direct",)
    options: dict = field(default_factory=dict)

    def kwargs(self) -> dict:
        return {
            "models": self.models,
            "lookback_us": self.lookback_us,
            "reset_after_conversion": self.reset_after_conversion,
            "group_by": self.group_by,
            "direct_channels": self.direct_channels,
        }


values = st.one_of(
    st.integers(0, 1_000),
    st.integers(0, 10**12),
    st.integers(0, I63),
    st.sampled_from([0, 1, 2**53 - 1, 2**53 + 1, I63]),
)


@st.composite
def position_shares(draw) -> dict:
    first = draw(st.floats(0, 1, allow_nan=False))
    last = draw(st.floats(0, 1 - first, allow_nan=False))
    if first + last == 0:
        last = 0.5
    return {"first": first, "last": last}


@st.composite
def model_lists(draw) -> list[tuple[str, dict]]:
    models = [
        ("FIRST_TOUCH", {}),
        ("LAST_TOUCH", {}),
        ("LAST_NON_DIRECT", {}),
        ("LINEAR", {}),
        ("POSITION_BASED", draw(position_shares())),
        ("TIME_DECAY", {"half_life_us": draw(st.integers(1, 14 * MICROS_PER_DAY))}),
    ]
    return draw(st.permutations(models))


@st.composite
def cases(draw, max_touchpoints: int = 30, max_conversions: int = 8) -> Case:
    """Few users, times from a coarse grid (ties and window edges are likely), unique odd ids."""
    unit = draw(st.sampled_from([1, 3_600_000_000, MICROS_PER_DAY]))
    n_users = draw(st.integers(1, 4))
    users = [f"u{i}" for i in range(n_users)]
    with_org = draw(st.booleans())
    orgs = [None, "o1", "o2"]
    n_tp = draw(st.integers(0, max_touchpoints))
    n_cv = draw(st.integers(0, max_conversions))
    ids = draw(
        st.lists(st.text(ID_ALPHABET, min_size=1, max_size=4), min_size=n_tp + n_cv, max_size=n_tp + n_cv, unique=True)
    )
    time = st.integers(0, 40).map(lambda k: T0 + k * unit)

    def group() -> dict:
        g = {"anon_id": draw(st.sampled_from(users))}
        if with_org:
            g["organization_id"] = draw(st.sampled_from(orgs))
        return g

    touchpoints = [
        {"touchpoint_id": ids[i], "occurred_at": draw(time), "channel": draw(st.sampled_from(CHANNELS)), **group()}
        for i in range(n_tp)
    ]
    conversions = [
        {"conversion_id": ids[n_tp + i], "occurred_at": draw(time), "value_micros": draw(values), **group()}
        for i in range(n_cv)
    ]
    return Case(
        touchpoints=touchpoints,
        conversions=conversions,
        models=draw(model_lists()),
        lookback_us=draw(st.sampled_from([1, unit, 3 * unit, 10 * unit, 30 * MICROS_PER_DAY])),
        reset_after_conversion=draw(st.booleans()),
        group_by=("organization_id", "anon_id") if with_org else ("anon_id",),
        direct_channels=draw(st.sampled_from([("direct",), ("direct", "organic_search"), ()])),
    )
