"""MARKOV and SHAPLEY: the engine against the brute-force reference, invariants and the bootstrap."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import optiq_engine as oq
from optiq_engine.kernels.bootstrap import poisson_counts
from tests.reference import data_driven as ref
from tests.reference.attribution import check_invariants, split_value
from tests.support.adapters import conversions_frame, touchpoints_frame
from tests.support.strategies import Case, cases

Path = tuple[str, ...]
T = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def path_tables(draw, channels: str = "abcde", max_len: int = 4, max_rows: int = 8) -> dict[Path, tuple[int, int]]:
    """Random aggregated paths (already transformed: no consecutive repeats unless asked)."""
    rows = draw(
        st.dictionaries(
            st.lists(st.sampled_from(channels), min_size=1, max_size=max_len).map(tuple),
            st.tuples(st.integers(0, 6), st.integers(0, 6)).filter(lambda t: t[0] + t[1] > 0),
            min_size=1,
            max_size=max_rows,
        )
    )
    return rows


def _frame(table: dict[Path, tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "path": [" > ".join(p) for p in table],
            "total_conversions": [v[0] for v in table.values()],
            "total_null": [v[1] for v in table.values()],
        }
    )


def _by_channel(fit: oq.models.FittedModel, column: str) -> dict[str, float]:
    return dict(fit.channel_credit.select("channel", column).iter_rows())


@given(path_tables(), st.integers(1, 3), st.sampled_from(["keep", "drop"]))
def test_markov_equals_dense_reference(table, order, self_transitions) -> None:
    fit = oq.fit_paths(
        _frame(table), model="MARKOV", order=order, transform="frequency", self_transitions=self_transitions
    )
    expected = ref.markov_dense(table, order=order, self_transitions=self_transitions)
    assert math.isclose(fit.p_conversion, expected["p_conversion"], rel_tol=1e-9, abs_tol=1e-12)
    removal, share = _by_channel(fit, "removal_effect"), _by_channel(fit, "share")
    for c in expected["removal_effect"]:
        assert math.isclose(removal[c], expected["removal_effect"][c], rel_tol=1e-9, abs_tol=1e-12), c
        assert math.isclose(share[c], expected["share"][c], rel_tol=1e-9, abs_tol=1e-12), c
    assert math.isclose(sum(share.values()), 1.0, rel_tol=1e-12) or sum(share.values()) == 0


@given(path_tables(max_len=3, max_rows=5), st.integers(1, 2))
@settings(max_examples=40)
def test_markov_equals_path_enumeration(table, order) -> None:
    fit = oq.fit_paths(_frame(table), model="MARKOV", order=order, transform="frequency")
    expected = ref.markov_enumerate(table, order=order)
    removal = _by_channel(fit, "removal_effect")
    assert math.isclose(fit.p_conversion, expected["p_conversion"], rel_tol=1e-9, abs_tol=1e-12)
    for c, v in expected["removal_effect"].items():
        assert math.isclose(removal[c], v, rel_tol=1e-9, abs_tol=1e-12), c


@given(path_tables(channels="abcdef", max_len=5), st.sampled_from(["rate", "conversions"]))
def test_shapley_equals_all_permutations(table, characteristic) -> None:
    fit = oq.fit_paths(_frame(table), model="SHAPLEY", characteristic=characteristic, transform="frequency")
    expected = ref.shapley_permutations(table, characteristic=characteristic)
    phi, share = _by_channel(fit, "shapley_value"), _by_channel(fit, "share")
    for c, v in expected["shapley_value"].items():
        assert math.isclose(phi[c], v, rel_tol=1e-9, abs_tol=1e-12), c
        assert math.isclose(share[c], expected["share"][c], rel_tol=1e-9, abs_tol=1e-12), c
    # Efficiency: the values add up to v(N) - v(empty).
    players = frozenset(expected["shapley_value"])
    v_all = ref.characteristic_function(table, characteristic)(players)
    assert math.isclose(sum(phi.values()), v_all, rel_tol=1e-9, abs_tol=1e-12)


def test_shapley_symmetry_and_null_player() -> None:
    # a and b are interchangeable; c only ever joins coalitions without changing their rate... as a null
    # player must be: v(S + c) == v(S) for every S, which holds when c's coalitions copy the rates.
    table = {
        ("a",): (1, 3),
        ("b",): (1, 3),
        ("a", "b"): (3, 1),
        ("a", "c"): (1, 3),
        ("b", "c"): (1, 3),
        ("a", "b", "c"): (3, 1),
        ("c",): (0, 4),
    }
    fit = oq.fit_paths(_frame(table), model="SHAPLEY")
    phi = _by_channel(fit, "shapley_value")
    assert phi["a"] == pytest.approx(phi["b"], abs=1e-15)
    assert phi["c"] == pytest.approx(0.0, abs=1e-15)


def test_self_transitions_do_not_change_removal_effects() -> None:
    table = {("a", "a", "b"): (3, 2), ("b", "b"): (1, 4), ("a",): (2, 2), ("c", "a", "a", "a"): (2, 1)}
    keep = oq.fit_paths(_frame(table), model="MARKOV", transform="frequency")
    drop = oq.fit_paths(_frame(table), model="MARKOV", transform="frequency", self_transitions="drop")
    np.testing.assert_allclose(keep.shares, drop.shares, rtol=1e-12)
    assert keep.transition_matrix.filter(pl.col("from_state") == pl.col("to_state")).height == 2
    assert drop.transition_matrix.filter(pl.col("from_state") == pl.col("to_state")).height == 0


@pytest.mark.parametrize(
    ("transform", "expected"),
    [("exposure", "a b a c"), ("unique", "a b c"), ("first", "a"), ("frequency", "a a b a c")],
)
def test_path_transforms(transform, expected) -> None:
    table = oq.PathTable.from_frame(_frame({("a", "a", "b", "a", "c"): (1, 0)}), transform=transform)
    assert table.to_frame().get_column("path").to_list() == [expected.split()]
    assert ref.transform_path(("a", "a", "b", "a", "c"), transform) == tuple(expected.split())


def test_remove_direct_if_not_all() -> None:
    frame = _frame({("direct", "a", "direct"): (1, 0), ("direct", "direct"): (0, 1)})
    table = oq.PathTable.from_frame(frame, remove_direct_if_not_all=True, transform="frequency")
    assert sorted(table.to_frame().get_column("path").to_list()) == [["a"], ["direct", "direct"]]


# --- attribute(): journeys, crediting and links against the reference ------------------------------------


def _engine_links(
    case: Case, model: oq.models.DataDrivenModel
) -> tuple[list[dict], oq.models.FittedModel | None, pl.DataFrame]:
    result = oq.attribute(
        touchpoints_frame(case.touchpoints, case.group_by),
        conversions_frame(case.conversions, case.group_by),
        models=[model],
        lookback=timedelta(microseconds=case.lookback_us),
        reset_after_conversion=case.reset_after_conversion,
        direct_channels=case.direct_channels,
    )
    links = result.links.with_columns(pl.col("model", "channel").cast(pl.String)).to_dicts()
    return links, result.fitted.get(model.name), result.unattributed


@given(
    cases(max_touchpoints=25, max_conversions=6),
    st.sampled_from(["MARKOV", "SHAPLEY"]),
    st.sampled_from(["exposure", "unique", "first", "frequency"]),
    st.booleans(),
)
@settings(max_examples=120)
def test_attribute_equals_reference(case: Case, name: str, transform: str, drop_direct: bool) -> None:
    for c in case.conversions:  # keep every sum of values within int64 (overflow: see the test below)
        c["value_micros"] //= 8
    model = oq.get_model(name)(transform=transform, remove_direct_if_not_all=drop_direct)
    links, fit, unattributed = _engine_links(case, model)
    ref_links, ref_fit = ref.data_driven_reference(
        case.touchpoints,
        case.conversions,
        model=name,
        lookback_us=case.lookback_us,
        reset_after_conversion=case.reset_after_conversion,
        transform=transform,
        remove_direct_if_not_all=drop_direct,
        group_by=case.group_by,
        direct_channels=case.direct_channels,
    )
    check_invariants(links, {c["conversion_id"]: c for c in case.conversions})
    ours = {(x["conversion_id"], x["position"]): x for x in links}
    theirs = {(x["conversion_id"], x["position"]): x for x in ref_links}
    assert ours.keys() == theirs.keys()
    # the baseline conversions (no channel credited: no links) are the reference's, named by the model
    baseline = unattributed.filter(pl.col("model") == name)
    assert sorted(baseline.get_column("conversion_id").to_list()) == sorted(ref_fit["uncredited"])
    assert set(baseline.get_column("reason")) <= {"baseline_conversion"}
    assert fit is None or fit.baseline_conversions == len(ref_fit["uncredited"])
    for key, mine in ours.items():
        assert mine["touchpoint_id"] == theirs[key]["touchpoint_id"], key
        assert math.isclose(mine["weight"], theirs[key]["weight"], rel_tol=1e-9, abs_tol=1e-12), key
    values = {c["conversion_id"]: c["value_micros"] for c in case.conversions}
    per_conversion: dict[str, list[dict]] = {}
    for (cid, _), row in sorted(ours.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        per_conversion.setdefault(cid, []).append(row)
    for cid, rows in per_conversion.items():
        assert [r["credited_value_micros"] for r in rows] == split_value(values[cid], [r["weight"] for r in rows])
    if fit is not None and ref_fit.get("share"):
        share = _by_channel(fit, "share")
        for c, v in ref_fit["share"].items():
            assert math.isclose(share[c], v, rel_tol=1e-9, abs_tol=1e-12), c


# --- path tables and the bootstrap ---------------------------------------------------------------------


def _journeys(n_users: int = 3_000, seed: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    data = oq.synthetic.generate(n_users=n_users, seed=seed)
    return data.touchpoints, data.conversions


def test_path_tables_add_up_across_user_batches() -> None:
    tp, cv = _journeys()
    whole = oq.attribute(tp, cv, models=["MARKOV"]).fitted["MARKOV"]
    users = tp.get_column("anon_id").unique().sort()
    parts = []
    for half in (users.head(users.len() // 2), users.tail(users.len() - users.len() // 2)):
        r = oq.attribute(
            tp.filter(pl.col("anon_id").is_in(half.implode())),
            cv.filter(pl.col("anon_id").is_in(half.implode())),
            models=["MARKOV"],
        )
        parts.append(r.fitted["MARKOV"].paths)
    merged = oq.PathTable.concat(parts)
    a = whole.paths.to_frame().with_columns(pl.col("path").list.join(">")).sort("path")
    b = merged.to_frame().with_columns(pl.col("path").list.join(">")).sort("path")
    assert a.equals(b)
    refit = _by_channel(oq.models.Markov().fit(merged), "share")
    for c, v in _by_channel(whole, "share").items():
        assert math.isclose(refit[c], v, rel_tol=1e-12, abs_tol=1e-15), c


def test_bootstrap_is_seeded_and_independent_of_partitioning() -> None:
    tp, cv = _journeys()
    fit = oq.attribute(tp, cv, models=["SHAPLEY"]).fitted["SHAPLEY"]
    table = fit.paths
    a = oq.models.Shapley(bootstrap=20, seed=5).fit(table)
    b = oq.models.Shapley(bootstrap=20, seed=5).fit(table)
    c = oq.models.Shapley(bootstrap=20, seed=6).fit(table)
    np.testing.assert_array_equal(a.replicates, b.replicates)
    assert not np.array_equal(a.replicates, c.replicates)
    # The same paths in another order (as another partitioning would give) draw the same counts.
    perm = np.random.default_rng(0).permutation(table.height)
    conv, null = poisson_counts(table.hashes, table.conversions, table.nulls, 5, 3)
    conv_p, null_p = poisson_counts(table.hashes[perm], table.conversions[perm], table.nulls[perm], 5, 3)
    np.testing.assert_array_equal(conv[perm], conv_p)
    np.testing.assert_array_equal(null[perm], null_p)
    cc = a.channel_credit
    assert {"ci_low", "ci_high"} <= set(cc.columns)
    assert (cc.get_column("ci_low") <= cc.get_column("ci_high")).all()


@pytest.mark.parametrize("name", ["MARKOV", "SHAPLEY", "DATA_DRIVEN"])
def test_a_replicate_without_a_conversion_is_left_out_of_the_intervals(name: str) -> None:
    """One conversion: about e^-1 of the replicates draw none. MARKOV and SHAPLEY counted them as shares 0
    (interval [0, 0.5] around a share of 0.5, which every replicate with a conversion gives); DATA_DRIVEN
    failed ("no journeys to fit on"). They have no shares: NaN rows, left out."""
    frame = pl.DataFrame({"path": ["a > b", "a"], "total_conversions": [1, 0], "total_null": [0, 1]})
    fit = oq.fit_paths(frame, model=name, bootstrap=50)
    empty = np.isnan(fit.replicates).all(axis=1)
    assert 5 < empty.sum() < 40 and np.isfinite(fit.replicates[~empty]).all()
    cc = fit.channel_credit
    share = cc.get_column("share").to_list()  # every replicate with a conversion gives the same shares
    assert cc.get_column("ci_low").to_list() == pytest.approx(share, abs=1e-9)
    assert cc.get_column("ci_high").to_list() == pytest.approx(share, abs=1e-9)


@pytest.mark.parametrize("lam", [0.3, 4.0, 25.0, 1_000.0])
def test_poisson_draws_have_poisson_moments(lam: float) -> None:
    n = 40_000
    hashes = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    conv, _ = poisson_counts(hashes, np.full(n, lam), np.zeros(n), 1, 0)
    assert conv.min() >= 0 and np.all(conv == np.floor(conv))
    se = math.sqrt(lam / n)
    assert abs(conv.mean() - lam) < 5 * se
    assert abs(conv.var() / lam - 1) < 0.05


def test_fitted_objects_expose_their_statistics() -> None:
    tp, cv = _journeys(1_000)
    result = oq.attribute(tp, cv, models=["MARKOV", "SHAPLEY", "LINEAR"], markov_order=2)
    markov, shapley = result.fitted["MARKOV"], result.fitted["SHAPLEY"]
    assert markov.model.order == 2
    assert markov.transition_matrix.columns == ["from_state", "to_state", "count", "probability"]
    sums = markov.transition_matrix.group_by("from_state").agg(pl.col("probability").sum())
    np.testing.assert_allclose(sums.get_column("probability").to_numpy(), 1.0, rtol=1e-12)
    assert shapley.coalition_values.columns == ["coalition", "conversions", "nulls", "value"]
    for fit in (markov, shapley):
        cc = fit.channel_credit
        assert cc.get_column("share").sum() == pytest.approx(1.0, rel=1e-12)
        # the fitted value, but for the baseline conversions the model credits to no channel (no links)
        baseline = result.unattributed.filter(pl.col("model") == fit.name).get_column("value_micros")
        assert cc.get_column("value_micros").sum() == fit.paths.value_micros.sum() - baseline.fill_null(0).sum()
    assert set(result.links.get_column("model").cast(pl.String).unique()) == {"MARKOV", "SHAPLEY", "LINEAR"}


def test_value_sums_beyond_int64_are_refused() -> None:
    tp = pl.DataFrame(
        {"touchpoint_id": ["t1", "t2"], "anon_id": ["u1", "u2"], "channel": ["a", "a"], "occurred_at": [T, T]}
    )
    cv = pl.DataFrame(
        {"conversion_id": ["c1", "c2"], "anon_id": ["u1", "u2"], "occurred_at": [T, T], "value_micros": [2**62, 2**62]}
    )
    linear = oq.attribute(tp, cv, models=["LINEAR"])
    assert linear.links.height == 2
    assert linear.credit.get_column("value_micros").to_list() == [None]  # the sum is 2**63: null, not wrapped
    with pytest.raises(oq.ModelError, match="2\\*\\*63"):
        oq.attribute(tp, cv, models=["MARKOV"])


def test_combined_credit_beyond_int64_is_null_not_wrapped() -> None:
    """combine_credit (batches, partitions) sums micros exactly: a sum past int64, or a cell already null in
    one part, is null, as attribute() on everything gives; other cells are exact."""
    users = ["u1", "u2", "u3", "u4"]
    tp = pl.DataFrame(
        {
            "touchpoint_id": [f"t{u}" for u in users],
            "anon_id": users,
            "channel": ["a", "a", "b", "b"],
            "occurred_at": [T] * 4,
        }
    )
    cv = pl.DataFrame(
        {
            "conversion_id": [f"c{u}" for u in users],
            "anon_id": users,
            "occurred_at": [T] * 4,
            "value_micros": [2**62, 2**62, 2**63 - 1, 1],
        }
    )
    whole = oq.attribute(tp, cv, models=["LINEAR"]).credit
    assert whole.get_column("value_micros").to_list() == [None, None]
    one_by_one = [
        oq.attribute(tp.filter(pl.col("anon_id") == u), cv.filter(pl.col("anon_id") == u), models=["LINEAR"]).credit
        for u in users
    ]
    combined = oq.combine_credit(one_by_one)
    assert combined.get_column("value_micros").to_list() == [None, None]  # 2**63 and 2**63: not wrapped
    assert combined.get_column("conversions").to_list() == [2.0, 2.0]
    overflowed = oq.attribute(tp.head(2), cv.head(2), models=["LINEAR"]).credit  # a: null in this part
    small = oq.attribute(tp.tail(1), cv.tail(1), models=["LINEAR"]).credit
    small_a = small.with_columns(pl.lit("a").alias("channel"))
    assert oq.combine_credit([overflowed, small_a]).get_column("value_micros").to_list() == [None]  # not 1
    assert oq.combine_credit([small, small_a, small]).get_column("value_micros").to_list() == [1, 2]


def test_bad_options_and_paths_are_refused() -> None:
    with pytest.raises(oq.ConfigError, match="order"):
        oq.models.Markov(order=5)
    with pytest.raises(oq.ConfigError, match="transform"):
        oq.attribute(pl.DataFrame(), pl.DataFrame(), models=["MARKOV"], path_transform="bogus")
    with pytest.raises(oq.InputError, match="negative"):
        oq.fit_paths(pl.DataFrame({"path": ["a"], "total_conversions": [-1], "total_null": [0]}))
    with pytest.raises(oq.InputError, match="empty path"):
        oq.fit_paths(pl.DataFrame({"path": [" > "], "total_conversions": [1], "total_null": [0]}))
    with pytest.raises(oq.ConfigError, match="micros"):
        oq.fit_paths(pl.DataFrame({"path": ["a"], "total_conversions": [1], "total_null": [0], "v": [1.5]}), value="v")


@given(
    st.lists(st.one_of(st.none(), st.lists(st.text("ab é>\t-", max_size=4), max_size=5).map(" > ".join)), max_size=20),
    st.sampled_from([">", " > ", "->", "é"]),
)
def test_path_strings_split_like_polars(rows, sep) -> None:
    """The byte tokenizer equals Polars' split + strip + drop empty, with codes over sorted names."""
    from optiq_engine.paths import _split

    col = pl.Series("path", rows, dtype=pl.String)
    offsets, codes, channels = _split(col, sep)
    expected = [[t.strip(" \t") for t in r.split(sep) if t.strip(" \t")] if r is not None else [] for r in rows]
    got = [[channels[c] for c in codes[offsets[i] : offsets[i + 1]]] for i in range(len(rows))]
    assert got == expected
    assert list(channels) == sorted({t for r in expected for t in r})


@pytest.mark.parametrize("name", ["MARKOV", "SHAPLEY", pytest.param("DATA_DRIVEN", marks=pytest.mark.slow)])
def test_a_fit_on_everyone_credits_each_partition_like_the_whole(name) -> None:
    """Fit once on all users, credit user partitions with that fit: the links are those of the whole run."""
    tp, cv = _journeys(2_000, seed=9)
    whole = oq.attribute(tp, cv, models=[name])
    users = tp.get_column("anon_id").unique().sort()
    parts = []
    for part in (users.gather_every(2), users.gather_every(2, offset=1)):
        keep = pl.col("anon_id").is_in(part.implode())
        parts.append(oq.attribute(tp.filter(keep), cv.filter(keep), models=[name], fitted=whole.fitted).links)
    key = ["conversion_id", "position"]
    a = whole.links.with_columns(pl.col("model", "channel").cast(pl.String)).sort(key)
    b = pl.concat([p.with_columns(pl.col("model", "channel").cast(pl.String)) for p in parts]).sort(key)
    assert a.drop("weight").equals(b.drop("weight"))
    np.testing.assert_allclose(a.get_column("weight").to_numpy(), b.get_column("weight").to_numpy(), rtol=1e-12)
    with pytest.raises(oq.ModelError, match="fitted"):
        oq.attribute(tp, cv, models=[oq.get_model(name)(seed=3)], fitted=whole.fitted)


@given(path_tables(channels="abcd", max_len=3, max_rows=6), st.sampled_from(["rate", "conversions"]))
def test_shapley_symmetry_and_null_player_on_random_games(table, characteristic) -> None:
    """Make a and b interchangeable (add every path's a<->b mirror) and z a null player (every coalition
    with z has the rate of the same coalition without it, and z never appears alone)."""
    swap = {"a": "b", "b": "a"}
    game: dict[Path, tuple[int, int]] = {}
    for path, (conv, null) in table.items():
        for p in (path, tuple(swap.get(c, c) for c in path)):
            c0, n0 = game.get(p, (0, 0))
            game[p] = (c0 + conv, n0 + null)
    if characteristic == "rate":  # v(S + z) = v(S): the same counts on the paths with z appended
        game.update({(*p, "z"): v for p, v in list(game.items())})
    fit = oq.fit_paths(_frame(game), model="SHAPLEY", characteristic=characteristic, transform="frequency")
    phi = _by_channel(fit, "shapley_value")
    assert phi.get("a", 0.0) == pytest.approx(phi.get("b", 0.0), rel=1e-12, abs=1e-15)
    if characteristic == "rate":
        assert phi["z"] == pytest.approx(0.0, abs=1e-12)


def test_progress_display_changes_nothing(capsys) -> None:
    tp, cv = _journeys(500)
    quiet = oq.attribute(tp, cv, models=["MARKOV", "LINEAR"])
    shown = oq.attribute(tp, cv, models=["MARKOV", "LINEAR"], progress=True)
    assert shown.links.equals(quiet.links)
    assert set(shown.timings) == set(quiet.timings)


def test_shares_of_every_model_in_one_frame() -> None:
    tp, cv = _journeys(800)
    result = oq.attribute(tp, cv, models=["LINEAR", "MARKOV", "DATA_DRIVEN"])
    shares = result.shares()
    assert shares.columns == ["model", "channel", "share"]
    assert shares.get_column("model").unique(maintain_order=True).to_list() == ["LINEAR", "MARKOV", "DATA_DRIVEN"]
    sums = shares.group_by("model").agg(pl.col("share").sum())
    np.testing.assert_allclose(sums.get_column("share").to_numpy(), 1.0, rtol=1e-12)
    markov = dict(shares.filter(pl.col("model") == "MARKOV").select("channel", "share").iter_rows())
    # the credited shares: the fit's shares to the balance's tolerance (docs/data_driven.md §5)
    assert markov == pytest.approx(_by_channel(result.fitted["MARKOV"], "share"), abs=1e-9)


@pytest.mark.parametrize("form", ["auto", "touch"])
def test_data_driven_with_no_journeys_credits_nothing_and_does_not_fail(form: str) -> None:
    """A quiet day of a nightly run (or touchpoints all outside the window): every model, DATA_DRIVEN included,
    leaves the conversions unattributed; the run does not fail with "no journeys to fit on"."""
    at = datetime(2024, 1, 1, tzinfo=UTC)
    tp = pl.DataFrame({"touchpoint_id": ["t1"], "anon_id": ["a"], "occurred_at": [at], "channel": ["email"]}).head(0)
    cv = pl.DataFrame({"conversion_id": ["c1"], "anon_id": ["b"], "occurred_at": [at], "value_micros": [5]})
    experiments = [oq.Experiment("email", 1.0, 0.5, at.date(), at.date())]
    model = oq.models.DataDriven(form=form, bootstrap=5, experiments=experiments if form == "auto" else ())
    result = oq.attribute(tp, cv, models=["LINEAR", "MARKOV", model])
    assert result.links.height == 0 and result.unattributed.height == 1
    fitted = result.fitted["DATA_DRIVEN"]
    assert fitted.mechanism.startswith("none") and fitted.channel_credit["share"].sum() == 0
    assert "DATA_DRIVEN" in result._repr_html_()


@given(path_tables(max_len=6, max_rows=12), st.integers(2, 3), st.integers(0, 2**31))
@settings(max_examples=60)
def test_markov_dense_counts_equal_the_transition_entries(table, order, seed) -> None:
    """Small chains count transitions in a dense matrix over every possible state; larger ones number one
    entry per touch. Both give the same states, the same transitions in the same order and the same
    counts bit for bit, on the table's counts and on a bootstrap replicate's."""
    import optiq_engine.models.markov as markov_module

    paths = oq.PathTable.from_frame(_frame(table), transform="frequency")
    dense = markov_module.MarkovChain(paths, order)
    assert dense._dense_cell is not None
    previous = markov_module._DENSE_KEYS
    markov_module._DENSE_KEYS = 0
    try:
        entries = markov_module.MarkovChain(paths, order)
    finally:
        markov_module._DENSE_KEYS = previous
    assert entries._dense_cell is None
    assert dense.keys.tolist() == entries.keys.tolist()
    assert dense.pair_src.tolist() == entries.pair_src.tolist() and dense.pair_dst.tolist() == entries.pair_dst.tolist()
    rng = np.random.default_rng(seed)
    for conv, null in ((paths.conversions, paths.nulls), (rng.poisson(paths.conversions), rng.poisson(paths.nulls))):
        conv, null = np.asarray(conv, dtype=np.float64), np.asarray(null, dtype=np.float64)
        assert dense.pair_weights(conv, null).tolist() == entries.pair_weights(conv, null).tolist()


def test_shapley_values_that_are_rounding_noise_credit_nothing() -> None:
    """Every coalition converts at rate 1, so every Shapley value is exactly 0; the closed form gave google_ads
    5.6e-17 and display -5.6e-17, and google_ads then took the whole share (a hypothesis case of
    test_attribute_equals_reference, 2026-12-08: the engine credited conversions the reference left as baseline)."""
    paths = pl.DataFrame(
        {
            "path": [["display"], ["google_ads", "email"], ["google_ads"], ["email", "display"]],
            "conv": [1, 2, 1, 1],
            "null": [0, 0, 0, 0],
        }
    )
    table = oq.PathTable.from_frame(paths, conversions="conv", nulls="null", transform="unique")
    credit = oq.models.Shapley(transform="unique").fit(table).channel_credit
    assert credit.get_column("shapley_value").to_list() == [0.0, 0.0, 0.0]
    assert credit.get_column("share").to_list() == [0.0, 0.0, 0.0]
