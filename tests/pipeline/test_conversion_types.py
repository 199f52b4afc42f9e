"""Credit per conversion type: ``attribute(..., by="name")`` (docs/attribution.md "Conversion types")."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import optiq_engine as oq
from optiq_engine.cli import app
from tests.reference.attribution import MICROS_PER_DAY, check_invariants
from tests.reference.conversion_types import attribute_by_type_reference, conversion_type, type_order
from tests.support.adapters import conversions_frame, model_object, touchpoints_frame
from tests.support.strategies import Case, cases

M = 1_000_000  # micros per currency unit


def _at(day: int) -> datetime:
    return datetime(2024, 1, day, tzinfo=UTC)


def one_user() -> tuple[pl.DataFrame, pl.DataFrame]:
    """One user: four touches, a sign-up between them, two purchases (windows overlap across types).

    display 1 Jan, email 5 Jan, sign_up 6 Jan, paid_search 9 Jan, purchase 10 Jan (90.00), direct 11 Jan,
    purchase 12 Jan (30.00).
    """
    tp = pl.DataFrame(
        {
            "touchpoint_id": ["t1", "t2", "t3", "t4"],
            "anon_id": ["u"] * 4,
            "occurred_at": [_at(1), _at(5), _at(9), _at(11)],
            "channel": ["display", "email", "paid_search", "direct"],
        }
    )
    cv = pl.DataFrame(
        {
            "conversion_id": ["s1", "p1", "p2"],
            "anon_id": ["u"] * 3,
            "occurred_at": [_at(6), _at(10), _at(12)],
            "value_micros": [0, 90 * M, 30 * M],
            "name": ["sign_up", "purchase", "purchase"],
        }
    )
    return tp, cv


def _credited(result: oq.AttributionResult, model: str) -> dict[tuple[str | None, str, str], int]:
    links = result.links.filter(pl.col("model") == model)
    return {
        (n, c, t): v
        for n, c, t, v in links.select(
            pl.col("conversion_name").cast(pl.String), "conversion_id", "touchpoint_id", "credited_value_micros"
        ).iter_rows()
    }


# --- worked example ----------------------------------------------------------------------------------------


def test_worked_example_a_sign_up_does_not_cut_a_purchase_window() -> None:
    tp, cv = one_user()
    together = oq.attribute(tp, cv, models=["LINEAR"])
    # All conversions together (reset_after_conversion): the sign-up ends the first journey, so p1 sees t3 only.
    assert together.links.filter(pl.col("conversion_id") == "p1").get_column("touchpoint_id").to_list() == ["t3"]

    result = oq.attribute(tp, cv, models=["LINEAR", "POSITION_BASED"], by="name")
    linear = _credited(result, "LINEAR")
    # sign_up s1: t1, t2 (value 0). purchase p1: t1, t2, t3 (the sign-up does not reset purchases), 30.00 each.
    # purchase p2: only t4 (the previous *purchase*, p1, resets the window), 30.00.
    assert linear == {
        ("sign_up", "s1", "t1"): 0,
        ("sign_up", "s1", "t2"): 0,
        ("purchase", "p1", "t1"): 30 * M,
        ("purchase", "p1", "t2"): 30 * M,
        ("purchase", "p1", "t3"): 30 * M,
        ("purchase", "p2", "t4"): 30 * M,
    }
    # POSITION_BASED 0.4 / 0.2 / 0.4 on p1: 36.00, 18.00, 36.00.
    position = _credited(result, "POSITION_BASED")
    assert [position["purchase", "p1", t] for t in ("t1", "t2", "t3")] == [36 * M, 18 * M, 36 * M]

    shares = result.shares().filter(pl.col("model") == "LINEAR")
    got = {(n, c): s for n, _, c, s in shares.iter_rows() if s}
    # purchase: 2 conversions, display 1/3 + email 1/3 + paid_search 1/3 (p1) and direct 1 (p2), over 2.
    third = 1 / 3
    expected = {
        ("purchase", "display"): third / 2,
        ("purchase", "email"): third / 2,
        ("purchase", "paid_search"): third / 2,
        ("purchase", "direct"): 0.5,
        ("sign_up", "display"): 0.5,
        ("sign_up", "email"): 0.5,
    }
    assert got.keys() == expected.keys()
    assert all(math.isclose(got[k], v, rel_tol=1e-12) for k, v in expected.items())
    assert result.shares().columns == ["conversion_name", "model", "channel", "share"]
    assert result.links.columns[0] == result.credit.columns[0] == result.unattributed.columns[0] == "conversion_name"


def test_worked_example_per_type_settings() -> None:
    """purchase: a 6-day lookback and LAST_TOUCH only; sign_up keeps the call's LINEAR and 30 days."""
    tp, cv = one_user()
    result = oq.attribute(
        tp,
        cv,
        models=["LINEAR"],
        by="name",
        conversion_types={"purchase": {"lookback": timedelta(days=6), "models": ["LAST_TOUCH"]}},
    )
    # p1 (10 Jan): window (4 Jan, 10 Jan]: t2, t3; LAST_TOUCH gives t3 the 90.00. p2: t4.
    assert _credited(result, "LAST_TOUCH") == {
        ("purchase", "p1", "t2"): 0,
        ("purchase", "p1", "t3"): 90 * M,
        ("purchase", "p2", "t4"): 30 * M,
    }
    assert set(_credited(result, "LINEAR")) == {("sign_up", "s1", "t1"), ("sign_up", "s1", "t2")}
    assert result.model_names == ("LAST_TOUCH", "LINEAR")  # purchase first: types in name order
    assert result.types["purchase"].config.lookback == timedelta(days=6)
    assert result.types["sign_up"].config.lookback == timedelta(days=30)
    credit = result.credit.filter(pl.col("conversions") > 0).with_columns(
        pl.col("conversion_name", "model", "channel").cast(pl.String)
    )
    assert credit.rows() == [
        ("purchase", "LAST_TOUCH", "direct", 1.0, 30 * M),
        ("purchase", "LAST_TOUCH", "paid_search", 1.0, 90 * M),
        ("sign_up", "LINEAR", "display", 0.5, 0),
        ("sign_up", "LINEAR", "email", 0.5, 0),
    ]


def test_a_conversion_without_a_name_is_a_type_of_its_own() -> None:
    """Null, empty and blank names: one type, ``conversion_name`` null, last; never dropped."""
    tp, cv = one_user()
    cv = pl.concat(
        [
            cv,
            pl.DataFrame(
                {
                    "conversion_id": ["a", "b", "c"],
                    "anon_id": ["u"] * 3,
                    "occurred_at": [_at(7), _at(8), _at(13)],
                    "value_micros": [1, 2, 3],
                    "name": [None, "", "  "],
                }
            ),
        ]
    )
    result = oq.attribute(tp, cv, models=["LAST_TOUCH"], by="name")
    assert list(result.types) == ["purchase", "sign_up", None]
    nameless = result.links.filter(pl.col("conversion_name").is_null() & (pl.col("weight") > 0))
    # a (7 Jan): t1, t2 -> t2; b (8 Jan): reset by a -> nothing (unattributed); c (13 Jan): t3, t4 -> t4.
    assert dict(nameless.select("conversion_id", "touchpoint_id").iter_rows()) == {"a": "t2", "c": "t4"}
    left = result.unattributed.select(pl.col("conversion_name").cast(pl.String), "conversion_id", "reason").rows()
    assert left == [(None, "b", "outside_window")]
    assert result.n_conversions == 6
    assert result.credit.get_column("conversion_name").null_count() == result.credit.height // 3


def test_without_by_nothing_changes() -> None:
    tp, cv = one_user()
    plain = oq.attribute(tp, cv, models=["LINEAR", "MARKOV"])
    assert "conversion_name" not in plain.links.columns and plain.types == {}
    assert plain.shares().columns == ["model", "channel", "share"]
    # The one-type run of by="name" is the run without by (the same code below the split).
    one = cv.with_columns(pl.lit("purchase").alias("name"))
    by = oq.attribute(tp, one, models=["LINEAR", "MARKOV"], by="name")
    assert by.links.drop("conversion_name").equals(oq.attribute(tp, one, models=["LINEAR", "MARKOV"]).links)


# --- errors --------------------------------------------------------------------------------------------------


def test_errors_name_the_problem() -> None:
    tp, cv = one_user()
    with pytest.raises(oq.SchemaError, match="no 'name' column.*did you mean 'Name'"):
        oq.attribute(tp, cv.rename({"name": "Name"}), by="name")
    with pytest.raises(oq.ConfigError, match="by must be None or 'name'"):
        oq.attribute(tp, cv, by="type")
    with pytest.raises(oq.ConfigError, match="conversion_types needs by='name'"):
        oq.attribute(tp, cv, conversion_types={"purchase": {}})
    with pytest.raises(oq.ConfigError, match=r"conversion_types\['purchase'\]: value_column .*cannot differ per type"):
        oq.attribute(tp, cv, by="name", conversion_types={"purchase": {"value_column": "x"}})
    with pytest.raises(oq.ConfigError, match=r"conversion_types\['purchase'\]: unknown option\(s\) lookback_days"):
        oq.attribute(tp, cv, by="name", conversion_types={"purchase": {"lookback_days": 9}})
    with pytest.raises(oq.ModelError, match=r"conversion_types\['purchase'\]: unknown model 'LINEARR'"):
        oq.attribute(tp, cv, by="name", conversion_types={"purchase": {"models": ["LINEARR"]}})
    with pytest.raises(oq.ConfigError, match="fitted= cannot be used with by='name'"):
        oq.attribute(tp, cv, by="name", fitted={"MARKOV": object()})
    with pytest.raises(oq.SchemaError, match="must hold strings"):
        oq.attribute(tp, cv.with_columns(pl.col("value_micros").cast(pl.Float64).alias("name")), by="name")


def test_a_setting_for_a_name_the_run_lacks_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    tp, cv = one_user()
    oq.attribute(tp, cv, models=["LINEAR"], by="name", conversion_types={"purchse": {"models": ["LAST_TOUCH"]}})
    assert (
        "conversion_types['purchse'] matches no conversion name of this run (did you mean 'purchase'?)" in caplog.text
    )


def test_no_conversions_gives_empty_frames_with_the_column() -> None:
    tp, cv = one_user()
    result = oq.attribute(tp, cv.clear(), models=["LINEAR"], by="name")
    assert result.links.height == result.credit.height == result.unattributed.height == 0
    assert result.credit.columns[0] == "conversion_name" and result.types == {}


# --- reference-backed property ----------------------------------------------------------------------------------

NAMES = st.sampled_from(["purchase", "sign_up", "Purchase", None, "", " "])


@st.composite
def typed_cases(draw) -> tuple[Case, list[str | None], dict]:
    case = draw(cases(max_touchpoints=20, max_conversions=10))
    names = [draw(NAMES) for _ in case.conversions]
    overrides: dict = {}
    if draw(st.booleans()):  # purchase: its own lookback, reset rule and models
        overrides["purchase"] = {
            "lookback_us": draw(st.sampled_from([MICROS_PER_DAY, 3 * MICROS_PER_DAY, 40 * MICROS_PER_DAY])),
            "reset_after_conversion": draw(st.booleans()),
            "models": draw(st.permutations(case.models))[:2],
        }
    return case, names, overrides


def _engine_overrides(overrides: dict) -> dict:
    return {
        name: {
            "lookback": timedelta(microseconds=o["lookback_us"]),
            "reset_after_conversion": o["reset_after_conversion"],
            "models": [model_object(n, p) for n, p in o["models"]],
        }
        for name, o in overrides.items()
    }


@settings(max_examples=150, deadline=None)
@given(typed_cases())
def test_by_name_matches_the_reference(typed: tuple[Case, list[str | None], dict]) -> None:
    case, names, overrides = typed
    conversions = [{**c, "name": n} for c, n in zip(case.conversions, names, strict=True)]
    cv = conversions_frame(case.conversions, case.group_by).with_columns(pl.Series("name", names, dtype=pl.String))
    result = oq.attribute(
        touchpoints_frame(case.touchpoints, case.group_by),
        cv,
        by="name",
        models=[model_object(n, p) for n, p in case.models],
        lookback=timedelta(microseconds=case.lookback_us),
        reset_after_conversion=case.reset_after_conversion,
        direct_channels=case.direct_channels,
        conversion_types=_engine_overrides(overrides),
    )
    ref_links, ref_unattributed = attribute_by_type_reference(
        case.touchpoints, conversions, per_type=overrides, **case.kwargs()
    )
    links = result.links.with_columns(pl.col("conversion_name", "model", "channel").cast(pl.String)).to_dicts()

    def key(x: dict) -> tuple:
        return (x["conversion_name"], x["model"], x["conversion_id"], x["position"])

    ours, ref = {key(x): x for x in links}, {key(x): x for x in ref_links}
    assert ours.keys() == ref.keys()
    for k, mine in ours.items():
        for col in ("touchpoint_id", "touchpoint_count", "channel", "credited_value_micros"):
            assert mine[col] == ref[k][col], (k, col)
        assert math.isclose(mine["weight"], ref[k]["weight"], rel_tol=1e-12, abs_tol=1e-15), k
    unattributed = result.unattributed.select(pl.col("conversion_name").cast(pl.String), "conversion_id", "reason")
    assert sorted(unattributed.rows(), key=lambda r: (type_order(r[0]), r[1])) == sorted(
        ((u["conversion_name"], u["conversion_id"], u["reason"]) for u in ref_unattributed),
        key=lambda r: (type_order(r[0]), r[1]),
    )
    _check_invariants(result, conversions)


def _check_invariants(result: oq.AttributionResult, conversions: list[dict]) -> None:
    """Weights sum to 1 and micros exactly per conversion and model; every conversion is in one type, linked
    or unattributed for every model of its type; credit adds up per (type, model); shares sum to 1."""
    by_id = {c["conversion_id"]: c for c in conversions}
    links = result.links.with_columns(pl.col("conversion_name", "model", "channel").cast(pl.String))
    check_invariants(links.to_dicts(), by_id)
    for name, cid in links.select("conversion_name", "conversion_id").unique().iter_rows():
        assert conversion_type(by_id[cid]) == name
    for name, typed in result.types.items():
        mine = [c for c in conversions if conversion_type(c) == name]
        linked = set(typed.links.get_column("conversion_id").to_list())
        left = set(typed.unattributed.get_column("conversion_id").to_list())
        assert linked | left == {c["conversion_id"] for c in mine} and not linked & left
        for model in typed.model_names:
            credit = result.credit.filter(
                (pl.col("conversion_name").cast(pl.String).eq_missing(name)) & (pl.col("model") == model)
            )
            assert math.isclose(credit.get_column("conversions").sum(), len(linked), abs_tol=1e-9)
            parts = credit.get_column("value_micros").to_list()  # exact Python sums; null: beyond int64
            assert None in parts or sum(parts) == sum(by_id[c].get("value_micros") or 0 for c in linked)
    shares = result.shares().group_by("conversion_name", "model").agg(pl.col("share").sum())
    assert all(math.isclose(s, 1.0, abs_tol=1e-9) or s == 0 for s in shares.get_column("share").to_list())


# --- data-driven fits per type --------------------------------------------------------------------------------


def test_data_driven_fits_are_per_type_with_the_types_non_converting_journeys() -> None:
    """ann: display, email, then a sign-up only; ben: email, then a purchase. For purchase, ann's touches are
    a non-converting journey (she never purchased); for sign_up, ben's are (docs/attribution.md)."""
    tp = pl.DataFrame(
        {
            "touchpoint_id": ["a1", "a2", "b1"],
            "anon_id": ["ann", "ann", "ben"],
            "occurred_at": [_at(1), _at(2), _at(3)],
            "channel": ["display", "email", "email"],
        }
    )
    cv = pl.DataFrame(
        {
            "conversion_id": ["s", "p"],
            "anon_id": ["ann", "ben"],
            "occurred_at": [_at(4), _at(5)],
            "value_micros": [0, 10 * M],
            "name": ["sign_up", "purchase"],
        }
    )
    result = oq.attribute(tp, cv, models=[oq.models.Markov(transform="frequency")], by="name")
    paths = {
        name: sorted(
            (" > ".join(p), c, n)
            for p, c, n in r.fitted["MARKOV"].paths.to_frame().select("path", "conversions", "nulls").rows()
        )
        for name, r in result.types.items()
    }
    assert paths["purchase"] == [("display > email", 0.0, 1.0), ("email", 1.0, 0.0)]
    assert paths["sign_up"] == [("display > email", 1.0, 0.0), ("email", 0.0, 1.0)]


def test_data_driven_by_name_equals_one_run_per_type() -> None:
    data = oq.synthetic.generate(n_users=1_500, seed=4)
    names = pl.Series("name", ["purchase", "sign_up", None])[pl.Series(range(data.conversions.height)) % 3]
    cv = data.conversions.with_columns(names.alias("name"))
    models = ["MARKOV", "SHAPLEY", "LINEAR"]
    result = oq.attribute(data.touchpoints, cv, models=models, by="name")
    for name, typed in result.types.items():
        alone = oq.attribute(data.touchpoints, cv.filter(pl.col("name").eq_missing(name)), models=models)
        assert typed.links.equals(alone.links)
        assert typed.fitted["MARKOV"].channel_credit.equals(alone.fitted["MARKOV"].channel_credit)
        mine = result.shares().filter(pl.col("conversion_name").eq_missing(name)).drop("conversion_name")
        assert mine.equals(alone.shares())


def test_a_lift_test_reaches_one_conversion_type_only() -> None:
    """A test measures one type: the run's experiments reaching two types would calibrate each to the whole
    result (150 met by 150 in each, 300 in all; silent before 2026-12-08). Per type, they are taken."""
    data = oq.synthetic.generate(n_users=1_500, seed=4)
    cv = data.conversions.with_columns(
        pl.Series("name", ["purchase", "sign_up"])[pl.Series(range(data.conversions.height)) % 2]
    )
    test = oq.Experiment("email", 10.0, 3.0)
    for options in (
        {"models": ["DATA_DRIVEN"], "experiments": [test]},
        {"models": [oq.models.DataDriven(experiments=[test])]},
    ):
        with pytest.raises(oq.ConfigError, match=r"'purchase', 'sign_up'.*2 times what it measured.*conversion_types"):
            oq.attribute(data.touchpoints, cv, by="name", **options)
    result = oq.attribute(
        data.touchpoints, cv, by="name", models=["DATA_DRIVEN"], conversion_types={"purchase": {"experiments": [test]}}
    )
    assert result.types["purchase"].fitted["DATA_DRIVEN"].experiment_checks.height == 1
    assert result.types["sign_up"].fitted["DATA_DRIVEN"].experiment_checks is None


def test_combine_credit_adds_up_per_type() -> None:
    tp, cv = one_user()
    first = oq.attribute(tp, cv, models=["LINEAR"], by="name")
    other = tp.with_columns(pl.lit("v").alias("anon_id"), pl.col("touchpoint_id") + "v")
    second = oq.attribute(
        other,
        cv.with_columns(pl.lit("v").alias("anon_id"), pl.col("conversion_id") + "v"),
        models=["LINEAR"],
        by="name",
    )
    both = oq.combine_credit([first.credit, second.credit])
    assert both.columns[0] == "conversion_name"
    purchase = both.filter(pl.col("conversion_name") == "purchase").get_column("conversions").sum()
    assert purchase == pytest.approx(4.0)


# --- optiq run: attributionSettings; the service's reports -----------------------------------------------------


def test_conversion_settings_read_by_and_per_name_keys() -> None:
    from optiq_engine.batch import conversion_settings, settings_from_json

    settings = {
        "by": "name",
        "models": ["LINEAR"],
        "lookbackDays": 30,
        "conversionTypes": {
            "purchase": {"lookbackDays": 90, "touchRule": "collapse_repeats", "models": ["LAST_TOUCH"]}
        },
    }
    assert settings_from_json(settings) == ({"lookback": timedelta(days=30)}, ["LINEAR"])  # no warning for by keys
    assert conversion_settings(settings) == (
        "name",
        {"purchase": {"lookback": timedelta(days=90), "touch_rule": "collapse_repeats", "models": ["LAST_TOUCH"]}},
    )
    assert conversion_settings({"lookbackDays": 3}) == (None, {})
    with pytest.raises(oq.ConfigError, match='conversionTypes needs "by": "name"'):
        conversion_settings({"conversionTypes": {"purchase": {}}})
    with pytest.raises(oq.ConfigError, match=r"by: cannot use 'type'"):
        conversion_settings({"by": "type"})
    with pytest.raises(
        oq.ConfigError, match=r"conversionTypes.purchase: unknown key\(s\) lookback; valid: .*lookbackDays"
    ):
        conversion_settings({"by": "name", "conversionTypes": {"purchase": {"lookback": 9}}})
    with pytest.raises(oq.ConfigError, match=r"lookbackDays: cannot use 'soon'"):
        conversion_settings({"by": "name", "conversionTypes": {"purchase": {"lookbackDays": "soon"}}})


def _named(data: oq.synthetic.SyntheticData) -> oq.synthetic.SyntheticData:
    """Every third conversion a sign-up, every third without a name."""
    from dataclasses import replace

    names = pl.Series(["purchase", "sign_up", None], dtype=pl.String)[pl.Series(range(data.conversions.height)) % 3]
    return replace(data, conversions=data.conversions.with_columns(names.alias("name")))


@pytest.mark.postgres
def test_optiq_run_attributes_per_name_from_attribution_settings_and_the_service_filters(postgres_url: str) -> None:
    import json
    from datetime import date

    import psycopg
    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine, pool, text
    from sqlalchemy.engine import make_url

    from optiq_engine.batch import run_batch
    from optiq_engine.io import db, seed
    from optiq_engine.service import keys
    from optiq_engine.service.api import create_app
    from optiq_engine.service.metrics import MetricsQuery, read_credit, read_metrics
    from tests.support.pg import fresh_database
    from tests.support.pg_data import db_links, expected_links, retag

    data = _named(retag(oq.synthetic.generate(n_users=400, seed=8), "orgN"))
    settings = {
        "by": "name",
        "models": ["LINEAR"],
        "conversionTypes": {"purchase": {"lookbackDays": 7, "models": ["LAST_TOUCH", "LINEAR"]}},
    }
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        seed.write_synthetic(url, data, page_views=True)
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as conn:
            conn.execute(
                """INSERT INTO "OrganizationSettings" (id, "organizationId", "attributionSettings")
                            VALUES ('st1', 'orgN', %s)""",
                (json.dumps(settings),),
            )
        summary = run_batch(url, organization_id="orgN", full=True)
        tp = data.touchpoints.drop("channel")
        expected = oq.attribute(
            tp,
            data.conversions,
            models=["LINEAR"],
            by="name",
            conversion_types={"purchase": {"lookback": timedelta(days=7), "models": ["LAST_TOUCH", "LINEAR"]}},
        )
        stored = db_links(url, "orgN")
        assert stored.equals(expected_links(expected))
        assert set(expected.types) == {"purchase", "sign_up", None}
        last_touch = expected.links.filter(pl.col("model") == "LAST_TOUCH")
        assert last_touch.height and set(last_touch.get_column("conversion_name").cast(pl.String).unique()) == {
            "purchase"
        }
        assert summary.links == expected.links.height
        per_type = {name or "(no name)": r.n_conversions for name, r in expected.types.items()}
        assert summary.conversion_types == per_type and list(summary.conversion_types)[-1] == "(no name)"
        assert run_batch(url, organization_id="orgN", full=True).changed == 0  # a rerun changes nothing
        with psycopg.connect(dsn) as conn:  # without "by" in the settings, --by name asks for it
            plain = {"models": ["LINEAR"], "conversionTypes": None}
            conn.execute("""UPDATE "OrganizationSettings" SET "attributionSettings" = %s""", (json.dumps(plain),))
        cli = CliRunner().invoke(app, ["run", "--database-url", url, "--org", "orgN", "--full", "--by", "name"])
        assert cli.exit_code == 0, cli.output
        assert "of type sign_up" in cli.output
        linear = oq.attribute(tp, data.conversions, models=["LINEAR"], by="name")
        assert db_links(url, "orgN").filter(pl.col("model") == "LINEAR").equals(expected_links(linear))

        # The service: attributed results of one conversion type (joined through the conversion's name).
        engine = create_engine(db.normalise_url(url), poolclass=pool.NullPool)
        start, end = date(2025, 1, 1), date(2027, 12, 31)
        credit = linear.credit.with_columns(pl.col("conversion_name", "model", "channel").cast(pl.String))
        with engine.connect() as conn:
            for name in ("purchase", "sign_up"):
                want = credit.filter((pl.col("conversion_name") == name) & (pl.col("model") == "LINEAR"))
                want = dict(want.filter(pl.col("conversions") > 0).select("channel", "conversions").iter_rows())
                query = MetricsQuery(
                    "orgN", start, end, model="LINEAR", grain="channel", compare=False, conversion_name=name
                )
                got = read_metrics(query, conn).filter(pl.col("conversions") > 0)
                got = dict(got.select("channel", "conversions").iter_rows())
                assert got.keys() == want.keys() and all(math.isclose(got[k], want[k], rel_tol=1e-9) for k in want)
            by_model = read_credit(
                conn, organization_id="orgN", start=start, end=end, grain="organization", conversion_name="sign_up"
            )
            assert by_model.get_column("model").to_list() == ["LINEAR"]  # sign-ups: the call's models only
            # LAST_TOUCH (purchases, first run) is not among the second run's models: its links stay.
            everything = read_credit(conn, organization_id="orgN", start=start, end=end, grain="organization")
            assert everything.filter(pl.col("model") == "LAST_TOUCH").get_column("conversions").item() == pytest.approx(
                expected.credit.filter(pl.col("model") == "LAST_TOUCH").get_column("conversions").sum()
            )
        with engine.begin() as conn:  # the HTTP API: ?conversion_name= on /v1/metrics and /v1/credit
            conn.execute(text("""INSERT INTO "User" (id, email) VALUES ('un', 'un@example.com')"""))
            conn.execute(
                text(
                    """INSERT INTO "Membership" (id, "userId", "organizationId", role) VALUES ('m_un', 'un', 'orgN', 'VIEWER')"""
                )
            )
            headers = {"Authorization": f"Bearer {keys.create_api_key(conn, organization_id='orgN', user_id='un')[1]}"}
        engine.dispose()
        app_engine = create_engine(db.normalise_url(url))
        with TestClient(create_app(engine=app_engine)) as client:
            params = {
                "start": str(start),
                "end": str(end),
                "grain": "organization",
                "model": "LINEAR",
                "compare": "false",
            }
            signups = credit.filter((pl.col("conversion_name") == "sign_up") & (pl.col("model") == "LINEAR"))
            r = client.get("/v1/metrics", params={**params, "conversion_name": "sign_up"}, headers=headers)
            assert r.status_code == 200, r.text
            assert r.json()["rows"][0]["conversions"] == pytest.approx(signups.get_column("conversions").sum())
            r = client.get("/v1/credit", params={**params, "conversion_name": "nothing"}, headers=headers)
            assert r.status_code == 200 and r.json()["rows"] == []
            assert (
                client.get("/v1/metrics", params={**params, "conversion_name": ""}, headers=headers).status_code == 422
            )
        app_engine.dispose()


@pytest.mark.postgres
def test_a_full_run_since_a_date_reads_back_the_longest_lookback_of_any_type(postgres_url: str) -> None:
    """Touchpoints are read from ``since`` minus the longest lookback of any type (purchase: 60 days, the
    organization's 3), so a purchase's window is whole."""
    import json

    import psycopg
    from sqlalchemy.engine import make_url

    from optiq_engine.batch import run_batch
    from optiq_engine.io import db, seed
    from tests.support.pg import fresh_database
    from tests.support.pg_data import db_links, expected_links, retag

    data = _named(retag(oq.synthetic.generate(n_users=300, seed=12), "orgL"))
    settings = {
        "by": "name",
        "models": ["LINEAR"],
        "lookbackDays": 3,
        "conversionTypes": {"purchase": {"lookbackDays": 60}},
    }
    since = datetime(2026, 2, 15, tzinfo=UTC)
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        seed.write_synthetic(url, data, page_views=True)
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as conn:
            conn.execute(
                """INSERT INTO "OrganizationSettings" (id, "organizationId", "attributionSettings")
                            VALUES ('st1', 'orgL', %s)""",
                (json.dumps(settings),),
            )
        run_batch(url, organization_id="orgL", full=True, since=since)
        expected = oq.attribute(
            data.touchpoints.drop("channel"),
            data.conversions,
            models=["LINEAR"],
            by="name",
            lookback=timedelta(days=3),
            conversion_types={"purchase": {"lookback": timedelta(days=60)}},
        )
        later = data.conversions.filter(pl.col("occurred_at") >= since).get_column("conversion_id")
        in_scope = expected.links.filter(pl.col("conversion_id").is_in(later.implode()))
        old = in_scope.filter(pl.col("conversion_name") == "purchase").join(
            data.touchpoints.select("touchpoint_id", "occurred_at"), on="touchpoint_id"
        )
        assert old.filter(pl.col("occurred_at") < since - timedelta(days=3)).height  # the case is exercised
        assert db_links(url, "orgL").equals(expected_links(replace_links(expected, in_scope)))


def replace_links(result: oq.AttributionResult, links: pl.DataFrame) -> oq.AttributionResult:
    from dataclasses import replace

    return replace(result, links=links)


@pytest.mark.postgres
def test_an_incremental_run_per_name_writes_what_a_full_run_would(postgres_url: str) -> None:
    """A new touchpoint before a purchase, and a conversion renamed in place (the change log has both): the
    incremental run's links equal attribute(by="name") over everything."""
    import json

    import psycopg
    from sqlalchemy.engine import make_url

    from optiq_engine.batch import run_batch
    from optiq_engine.io import db, postgres, seed
    from tests.support.pg import fresh_database
    from tests.support.pg_data import db_links, expected_links, retag

    data = _named(retag(oq.synthetic.generate(n_users=300, seed=14), "orgI"))
    settings = {"by": "name", "models": ["LINEAR", "LAST_TOUCH"], "conversionTypes": {"purchase": {"lookbackDays": 45}}}
    types = {"purchase": {"lookback": timedelta(days=45)}}
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        seed.write_synthetic(url, data, page_views=True)
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as conn:
            conn.execute(
                """INSERT INTO "OrganizationSettings" (id, "organizationId", "attributionSettings")
                            VALUES ('st1', 'orgI', %s)""",
                (json.dumps(settings),),
            )
        assert run_batch(url, organization_id="orgI").mode == "FULL"
        purchases = data.conversions.filter(pl.col("name") == "purchase").sort("conversion_id")
        buy, other = purchases.row(0, named=True), purchases.row(1, named=True)
        with psycopg.connect(dsn) as conn:
            conn.execute(
                'INSERT INTO "TouchPoint" (id, "siteId", "anonId", "occurredAt", "utmSource", "utmMedium") '
                "VALUES ('orgI_tp_new', %s, %s, %s, 'newsletter', 'email')",
                (buy["site_id"], buy["anon_id"], buy["occurred_at"] - timedelta(days=40)),
            )
            conn.execute("""UPDATE "TrackingEvent" SET name = 'sign_up' WHERE id = %s""", (other["conversion_id"],))
        run = run_batch(url, organization_id="orgI")
        assert run.mode == "INCREMENTAL" and run.users == len({buy["anon_id"], other["anon_id"]}) and run.changed > 0
        window = postgres.Window(organization_id="orgI")
        tp, cv = postgres.read_touchpoints(url, window), postgres.read_conversions(url, window)
        expected = oq.attribute(tp, cv, models=["LINEAR", "LAST_TOUCH"], by="name", conversion_types=types)
        assert db_links(url, "orgI").equals(expected_links(expected))
        new = expected.links.filter(pl.col("touchpoint_id") == "orgI_tp_new")
        assert new.get_column("conversion_name").cast(pl.String).unique().to_list() == ["purchase"]


def test_cli_attribute_by_name(tmp_path) -> None:
    tp, cv = one_user()
    tp.write_parquet(tmp_path / "tp.parquet")
    cv.write_parquet(tmp_path / "cv.parquet")
    args = [
        "attribute",
        "--touchpoints",
        str(tmp_path / "tp.parquet"),
        "--conversions",
        str(tmp_path / "cv.parquet"),
        "--out",
        str(tmp_path / "out"),
        "-m",
        "LINEAR",
    ]
    result = CliRunner().invoke(app, [*args, "--by", "name"])
    assert result.exit_code == 0, result.output
    assert "per conversion type" in result.output and "sign_up" in result.output
    links = pl.read_parquet(tmp_path / "out" / "links.parquet")
    expected = oq.attribute(tp, cv, models=["LINEAR"], by="name").links
    assert links.with_columns(pl.col("conversion_name", "model", "channel").cast(pl.String)).equals(
        expected.with_columns(pl.col("conversion_name", "model", "channel").cast(pl.String))
    )
    assert pl.read_parquet(tmp_path / "out" / "credit.parquet").columns[0] == "conversion_name"
    bad = CliRunner().invoke(app, [*args, "--by", "name", "--partitions", "2"])
    assert bad.exit_code == 2 and "--partitions 1" in bad.output


def test_by_name_does_not_depend_on_input_row_order() -> None:
    data = oq.synthetic.generate(n_users=800, seed=6)
    names = pl.Series(["purchase", "sign_up", None, " "], dtype=pl.String)[
        pl.Series(range(data.conversions.height)) % 4
    ]
    cv = data.conversions.with_columns(names.alias("name"))
    models = ["LINEAR", "TIME_DECAY", "MARKOV"]
    result = oq.attribute(data.touchpoints, cv, models=models, by="name")
    shuffled = oq.attribute(
        data.touchpoints.sample(fraction=1.0, shuffle=True, seed=1),
        cv.sample(fraction=1.0, shuffle=True, seed=2),
        models=models,
        by="name",
    )
    assert result.links.equals(shuffled.links)
    assert result.credit.equals(shuffled.credit) and result.unattributed.equals(shuffled.unattributed)


def test_plots_take_one_type() -> None:
    """A by-name result's (model, channel) cells are per type: plot_credit and compare_with_truth refuse the
    mix and take one type's result."""
    pytest.importorskip("matplotlib")
    from optiq_engine.plot import compare_with_truth, plot_credit

    tp, cv = one_user()
    result = oq.attribute(tp, cv, models=["LINEAR"], by="name")
    with pytest.raises(oq.ConfigError, match=r"per conversion type.*result.types\['purchase'\]"):
        plot_credit(result)
    with pytest.raises(oq.ConfigError, match="compare_with_truth: the result has credit per conversion type"):
        compare_with_truth(result, pl.DataFrame({"channel": ["email"], "true_share": [1.0]}))
    assert plot_credit(result.types["purchase"]) is not None


@pytest.mark.postgres
def test_a_partitioned_run_per_name_writes_what_one_part_would(postgres_url: str) -> None:
    """Slices of users hold different types (and so different models): their links still add up."""
    import json

    import psycopg
    from sqlalchemy.engine import make_url

    from optiq_engine.batch import run_batch
    from optiq_engine.io import db, seed
    from tests.support.pg import fresh_database
    from tests.support.pg_data import db_links, expected_links, retag

    data = _named(retag(oq.synthetic.generate(n_users=200, seed=15), "orgP"))
    cv = data.conversions
    only = cv.filter(pl.col("anon_id") == cv.get_column("anon_id").min()).head(1)  # one user's one rare type
    data = replace_data(
        data,
        pl.concat(
            [
                cv.filter(pl.col("conversion_id") != only["conversion_id"][0]),
                only.with_columns(pl.lit("rare").alias("name")),
            ]
        ),
    )
    settings = {"by": "name", "models": ["LINEAR"], "conversionTypes": {"rare": {"models": ["FIRST_TOUCH"]}}}
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        seed.write_synthetic(url, data, page_views=True)
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as conn:
            conn.execute(
                """INSERT INTO "OrganizationSettings" (id, "organizationId", "attributionSettings")
                            VALUES ('st1', 'orgP', %s)""",
                (json.dumps(settings),),
            )
        run_batch(url, organization_id="orgP", full=True, partitions=3, extract_touchpoints=False)
        expected = oq.attribute(
            data.touchpoints.drop("channel"),
            data.conversions,
            models=["LINEAR"],
            by="name",
            conversion_types={"rare": {"models": ["FIRST_TOUCH"]}},
        )
        assert db_links(url, "orgP").equals(expected_links(expected))


def replace_data(data: oq.synthetic.SyntheticData, conversions: pl.DataFrame) -> oq.synthetic.SyntheticData:
    from dataclasses import replace

    return replace(data, conversions=conversions)


def test_names_differing_by_case_or_spaces_are_warned_about() -> None:
    """ "purchase " next to "purchase" are two types (names compare exactly), and conversion_types["purchase"]
    applies to one only: warned, never merged."""
    from datetime import UTC, datetime, timedelta

    from optiq_engine.errors import ConfusableIdWarning

    t = datetime(2026, 3, 1, tzinfo=UTC)
    tp = pl.DataFrame(
        {
            "touchpoint_id": ["a", "b"],
            "anon_id": ["u", "v"],
            "channel": ["email", "email"],
            "occurred_at": [t - timedelta(days=1)] * 2,
        }
    )
    cv = pl.DataFrame(
        {
            "conversion_id": ["c", "d"],
            "anon_id": ["u", "v"],
            "occurred_at": [t, t],
            "value_micros": [1, 1],
            "name": ["purchase ", "purchase"],
        }
    )
    with pytest.warns(ConfusableIdWarning, match="differ only by case or surrounding spaces"):
        result = oq.attribute(tp, cv, models=["LINEAR"], by="name")
    assert sorted(result.types) == ["purchase", "purchase "]


def test_each_types_log_lines_name_the_type(caplog) -> None:
    """A lookback that cuts the journeys of data-driven fits logs one line per type: each now says which."""
    tp, cv = one_user()
    with caplog.at_level("WARNING", logger="optiq_engine"):
        oq.attribute(tp, cv, models=["MARKOV"], by="name", lookback=timedelta(days=1))
    lines = [r.getMessage() for r in caplog.records if "cut" in r.getMessage()]
    assert sorted(line.split(":")[0] for line in lines) == ["conversion type purchase", "conversion type sign_up"]
