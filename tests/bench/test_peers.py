"""The peer benchmark runner (benchmarks/peers.py) on tiny tables; each peer's tests skip when it is not installed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from benchmarks import peer_paths, peers

TINY = pl.DataFrame(
    {
        "path": ["a", "a > b", "b > c", "c > a > b", "c", "b > a", "a > c > b", "d > a", "d"],
        "total_conversions": [3, 4, 0, 2, 1, 2, 1, 1, 0],
        "total_null": [5, 2, 6, 1, 4, 3, 1, 2, 5],
        "total_conversion_value": [30.0, 40.0, 0.0, 20.0, 10.0, 20.0, 10.0, 10.0, 0.0],
    }
)
IN_PROCESS = [name for name in peers.DEFAULT_VARIANTS if not name.startswith("dp6:")]


def _require(variant: str) -> None:
    spec = peers.VARIANTS[variant]
    pytest.importorskip(spec.module, reason=f"{spec.dist} is not installed (pip install -e '.[peers]')")


@pytest.mark.parametrize("variant", IN_PROCESS)
def test_variant_shares_sum_to_one(variant: str) -> None:
    _require(variant)
    run = peers.run_peer(TINY, variant, isolated=False)
    assert run.status == "ok", run.reason
    assert run.version
    assert set(run.shares) <= {"a", "b", "c", "d"}
    assert sum(run.shares.values()) == pytest.approx(1.0, abs=1e-9)
    assert run.seconds is not None and run.seconds >= 0
    assert run.prepare_seconds is not None and run.prepare_seconds >= 0


def test_isolated_run_measures_time_and_memory() -> None:
    _require("ca:markov_o1")
    run = peers.run_peer(TINY, "ca:markov_o1", timeout=120)
    assert run.status == "ok", run.reason
    assert sum(run.shares.values()) == pytest.approx(1.0)
    assert run.peak_memory_bytes is not None and run.peak_memory_bytes >= 0
    assert run.rss_before_bytes is not None and run.rss_before_bytes > 0
    assert run.wall_seconds is not None and run.wall_seconds >= run.seconds


def test_removal_effect_shares_agree_across_peers() -> None:
    """ChannelAttribution (out_more) and DP6's mam solve the same order-1 removal effects (CA by simulation)."""
    _require("ca:markov_o1")
    _require("mam:markov")
    ca = peers.run_peer(TINY, "ca:markov_o1", isolated=False, out_more=True, nsim_start=200_000)
    mam = peers.run_peer(TINY, "mam:markov", isolated=False)
    assert ca.status == mam.status == "ok"
    assert peers.max_share_difference(ca.shares, ca.removal_shares) < 1e-9  # CA's shares are normalised effects
    assert peers.max_share_difference(ca.removal_shares, mam.removal_shares) < 0.02


def test_channel_attribution_spread() -> None:
    _require("ca:markov_o1")
    spread = peers.channel_attribution_spread(TINY, seeds=(10, 20, 30), isolated=False)
    assert spread["channel"].to_list() == ["a", "b", "c", "d"]
    assert (spread["min"] <= spread["mean"]).all() and (spread["mean"] <= spread["max"]).all()
    assert (spread["n_runs"] == 3).all()
    assert spread["mean"].sum() == pytest.approx(1.0)
    with pytest.warns(UserWarning, match="share random streams"):
        peers.channel_attribution_spread(TINY, seeds=(1, 2), isolated=False)


def test_timeout_kills_the_run() -> None:
    _require("ca:markov_o1")
    run = peers.run_peer(TINY, "ca:markov_o1", timeout=0.05)
    assert run.status == "timeout" and "killed" in run.reason


def test_exponential_shapley_is_skipped_beyond_its_channel_limit() -> None:
    many = pl.DataFrame(
        {"path": [" > ".join(f"ch{i}" for i in range(16))], "total_conversions": [1], "total_null": [1]}
    )
    run = peers.run_peer(many, "mta:shapley")
    assert run.status == "skipped"
    assert "16 channels" in run.reason or "not installed" in run.reason


def test_default_skipped_variant_has_a_reason() -> None:
    run = peers.run_peer(TINY, "mta:markov_sim")
    assert run.status == "skipped" and run.reason


def test_dp6_legacy_in_its_side_environment() -> None:
    python = peers._python_for(peers.VARIANTS["dp6:markov"])
    if peers._installed_version(peers.VARIANTS["dp6:markov"], python) is None:
        pytest.skip(
            "marketing-attribution-models 1.0.10 side environment missing (python -m benchmarks.peers setup-legacy)"
        )
    for variant in ("dp6:markov", "dp6:shapley"):
        run = peers.run_peer(TINY, variant, timeout=120)
        assert run.status == "ok", run.reason
        assert sum(run.shares.values()) == pytest.approx(1.0)


def test_expand_and_group_journeys_keep_every_journey() -> None:
    grouped = peers.grouped_journeys(TINY)
    journeys = peers.expand_journeys(TINY)
    total = int(TINY["total_conversions"].sum() + TINY["total_null"].sum())
    assert int(grouped["occurrences"].sum()) == journeys.height == total
    assert int(journeys["conv"].sum()) == int(TINY["total_conversions"].sum())
    counts = journeys.group_by("path").agg(conv=pl.col("conv").sum(), null=(~pl.col("conv")).sum()).sort("path")
    expected = TINY.sort("path").select("path", conv="total_conversions", null="total_null")
    assert counts.select("path", pl.col("conv").cast(pl.Int64), pl.col("null").cast(pl.Int64)).equals(expected)


def test_journeys_from_events_worked_example() -> None:
    """u1: a a b [conv] c [conv] a -> "a > b" (conv), "c" (conv), "a" (null); u2: b b -> "b" (null)."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    at = [t0 + timedelta(hours=h) for h in range(8)]
    touchpoints = pl.DataFrame(
        {
            "anon_id": ["u1", "u1", "u1", "u1", "u1", "u2", "u2"],
            "occurred_at": [at[0], at[1], at[2], at[4], at[6], at[0], at[1]],
            "channel": ["a", "a", "b", "c", "a", "b", "b"],
        }
    )
    conversions = pl.DataFrame(
        {"anon_id": ["u1", "u1"], "occurred_at": [at[3], at[5]], "value_micros": [5_000_000, 7_000_000]}
    )
    journeys = peer_paths.journeys_from_events(touchpoints, conversions)
    assert journeys.select("anon_id", "path", "converted", "value").rows() == [
        ("u1", "a > b", True, 5.0),
        ("u1", "c", True, 7.0),
        ("u1", "a", False, 0.0),
        ("u2", "b", False, 0.0),
    ]
    table = peer_paths.aggregate_paths(journeys)
    assert table.rows() == [("a", 0, 1, 0.0), ("a > b", 1, 0, 5.0), ("b", 0, 1, 0.0), ("c", 1, 0, 7.0)]


def test_sizes_parse() -> None:
    assert peer_paths.parse_size("10k") == 10_000
    assert peer_paths.parse_size("10M") == 10_000_000
    assert peer_paths.parse_size("2500") == 2_500
    assert peer_paths.size_label(1_000_000) == "1M"
