"""Identity stitching (docs/contract.md §1.5): worked examples with hand-computed numbers, the stitch map and
attribute(identity="stitched") against the reference on random anon id / user id graphs, invariants, the
default path unchanged, and refused input."""

from __future__ import annotations

import math
import warnings
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import optiq_engine as oq
from optiq_engine.errors import ConfigError, ConfusableIdWarning, SchemaError
from optiq_engine.identity import PERSON, PLACEHOLDER_PATTERN, stitch, stitch_map
from tests.reference.attribution import attribute_reference, check_invariants
from tests.reference.identity import stitch_map_reference, summary_reference, with_persons
from tests.support.adapters import conversions_frame, model_object, touchpoints_frame
from tests.support.strategies import Case, cases

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def two_devices() -> tuple[pl.DataFrame, pl.DataFrame]:
    """A phone and a laptop of one person, u1; a tablet nobody identified (its user id is blank).

    phone:  t1 paid_social day 0 (anonymous), t2 email day 2 (logged in as u1)
    laptop: t3 paid_search day 4 09:00 (anonymous), c1 day 4 10:00 worth 100.00 (logged in as u1)
    tablet: t4 display day 3, c2 day 5 worth 10.00 (user id "  ": no identity)
    """
    touchpoints = pl.DataFrame(
        {
            "touchpoint_id": ["t1", "t2", "t3", "t4"],
            "anon_id": ["phone", "phone", "laptop", "tablet"],
            "occurred_at": [_at(0), _at(2), _at(4) + timedelta(hours=9), _at(3)],
            "channel": ["paid_social", "email", "paid_search", "display"],
            "user_id": [None, "u1", None, "  "],
        }
    )
    conversions = pl.DataFrame(
        {
            "conversion_id": ["c1", "c2"],
            "anon_id": ["laptop", "tablet"],
            "occurred_at": [_at(4) + timedelta(hours=10), _at(5)],
            "value_micros": [100_000_000, 10_000_000],
            "user_id": ["u1", None],
        }
    )
    return touchpoints, conversions


def _credit(result: oq.AttributionResult, model: str) -> dict[str, tuple[float, int]]:
    rows = result.credit.filter((pl.col("model") == model) & (pl.col("conversions") > 0))
    return {r["channel"]: (round(r["conversions"], 12), r["value_micros"]) for r in rows.to_dicts()}


# --- worked examples -------------------------------------------------------------------------------------


def test_two_devices_login_on_the_second_before_and_after_stitching() -> None:
    tp, cv = two_devices()
    before = oq.attribute(tp, cv, models=["LINEAR", "FIRST_TOUCH"])
    # By cookie: c1 sees the laptop's paid_search alone; the phone's touches convert nothing.
    assert _credit(before, "LINEAR") == {"paid_search": (1.0, 100_000_000), "display": (1.0, 10_000_000)}
    assert _credit(before, "FIRST_TOUCH") == {"paid_search": (1.0, 100_000_000), "display": (1.0, 10_000_000)}
    assert before.identity is None

    after = oq.attribute(tp, cv, models=["LINEAR", "FIRST_TOUCH"], identity="stitched")
    # Stitched: u1's journey is t1 (phone, before its login), t2 (phone), t3 (laptop): 1/3 each, the
    # 100_000_000 micros split 33_333_333 / 33_333_333 / 33_333_334 (the remainder to the later position).
    third = round(1 / 3, 12)
    assert _credit(after, "LINEAR") == {
        "paid_social": (third, 33_333_333),
        "email": (third, 33_333_333),
        "paid_search": (third, 33_333_334),
        "display": (1.0, 10_000_000),
    }
    # FIRST_TOUCH moves the whole purchase to the phone's first, anonymous touch.
    assert _credit(after, "FIRST_TOUCH") == {"paid_social": (1.0, 100_000_000), "display": (1.0, 10_000_000)}
    links = after.links_for("LINEAR").filter(pl.col("conversion_id") == "c1").sort("position")
    assert links.get_column("touchpoint_id").to_list() == ["t1", "t2", "t3"]  # each touch keeps its own id
    assert links.get_column("touchpoint_count").to_list() == [3, 3, 3]
    assert after.identity == oq.IdentityStitch(
        anon_ids=3,
        identified=2,
        persons=2,
        merged_anon_ids=2,
        merged_persons=1,
        several_user_ids=0,
        blank_user_ids=1,
    )
    assert after.identity.message().startswith("identity stitching: 2 anon ids merged into 1 person")


def test_a_shared_device_goes_to_its_latest_user() -> None:
    """The family laptop was used by u2 (day 1), then by u3 (day 2): its touches are u3's (Snowplow's
    rule); u2's own phone converts on its touches alone."""
    tp = pl.DataFrame(
        {
            "touchpoint_id": ["f1", "f2", "p1"],
            "anon_id": ["family", "family", "u2-phone"],
            "occurred_at": [_at(1), _at(2), _at(3)],
            "channel": ["display", "email", "paid_search"],
            "user_id": ["u2", "u3", "u2"],
        }
    )
    cv = pl.DataFrame(
        {
            "conversion_id": ["buy-u2", "buy-u3"],
            "anon_id": ["u2-phone", "u3-phone"],
            "occurred_at": [_at(4), _at(4)],
            "value_micros": [30_000_000, 50_000_000],
            "user_id": ["u2", "u3"],
        }
    )
    result = oq.attribute(tp, cv, models=["LINEAR"], identity="stitched")
    links = {(r["conversion_id"], r["touchpoint_id"]): r["weight"] for r in result.links.to_dicts()}
    assert links == {("buy-u2", "p1"): 1.0, ("buy-u3", "f1"): 0.5, ("buy-u3", "f2"): 0.5}
    assert result.identity.several_user_ids == 1
    assert result.identity.persons == 2  # u2 and u3: two user ids are never one person


def test_a_user_id_never_equals_an_anon_id() -> None:
    """An unidentified anon id "x" and the user id "x" are two persons."""
    tp = pl.DataFrame({"touchpoint_id": ["t1"], "anon_id": ["x"], "occurred_at": [_at(0)], "channel": ["email"]})
    cv = pl.DataFrame(
        {"conversion_id": ["c1"], "anon_id": ["y"], "occurred_at": [_at(1)], "value_micros": [1], "user_id": ["x"]}
    )
    result = oq.attribute(tp, cv, models=["LINEAR"], identity="stitched")
    assert result.links.is_empty()
    assert result.unattributed.get_column("reason").to_list() == ["no_touchpoints"]
    assert result.unattributed.get_column("anon_id").to_list() == ["y"]  # the conversion's own anon id


def test_integer_user_ids_and_stitching_within_an_organization() -> None:
    tp = pl.DataFrame(
        {
            "touchpoint_id": ["a", "b"],
            "organization_id": ["o1", "o2"],
            "anon_id": ["d1", "d1"],
            "occurred_at": [_at(0), _at(0)],
            "channel": ["email", "display"],
            "user_id": [7, 7],
        }
    )
    cv = pl.DataFrame(
        {
            "conversion_id": ["c"],
            "organization_id": ["o1"],
            "anon_id": ["d2"],
            "occurred_at": [_at(1)],
            "value_micros": [5],
            "user_id": [7],
        }
    )
    result = oq.attribute(tp, cv, models=["LINEAR"], identity="stitched")
    # User 7 of o1 is d1 and d2 of o1; o2's d1 (also user 7) is another organization's person.
    assert result.links.get_column("touchpoint_id").to_list() == ["a"]


# --- the default path ------------------------------------------------------------------------------------


def test_default_identity_is_the_anon_id_and_unchanged() -> None:
    data = oq.synthetic.generate(n_users=2_000, seed=3)
    tp, cv = data.touchpoints, data.conversions
    users = pl.col("anon_id").str.slice(0, 6)  # any user_id column: ignored unless identity="stitched"
    plain = oq.attribute(tp, cv)
    for result in (
        oq.attribute(tp.with_columns(users.alias("user_id")), cv.with_columns(users.alias("user_id"))),
        oq.attribute(tp, cv, identity="anon_id"),
    ):
        assert result.links.equals(plain.links)
        assert result.credit.equals(plain.credit)
        assert result.unattributed.equals(plain.unattributed)
        assert result.identity is None


def test_stitching_by_the_anon_id_itself_changes_nothing() -> None:
    """user_id = anon_id: every person is one anon id, so the stitched run credits exactly as the default."""
    data = oq.synthetic.generate(n_users=2_000, seed=4)
    tp = data.touchpoints.with_columns(pl.col("anon_id").alias("user_id"))
    cv = data.conversions.with_columns(pl.col("anon_id").alias("user_id"))
    plain = oq.attribute(data.touchpoints, data.conversions, models=["LINEAR", "TIME_DECAY"])
    stitched = oq.attribute(tp, cv, models=["LINEAR", "TIME_DECAY"], identity="stitched")
    order = ["model", "conversion_id", "position"]  # groups are sorted by a hash of their key: rows move
    assert stitched.links.sort(order).equals(plain.links.sort(order))
    assert stitched.credit.get_column("value_micros").equals(plain.credit.get_column("value_micros"))  # exact
    a, b = stitched.credit.get_column("conversions"), plain.credit.get_column("conversions")
    assert ((a - b).abs() < 1e-9).all()  # float sums in another order
    assert stitched.identity.merged_anon_ids == 0


# --- refused and warned input ----------------------------------------------------------------------------


def test_unknown_identity_is_refused() -> None:
    tp, cv = two_devices()
    with pytest.raises(ConfigError, match="identity must be one of 'anon_id', 'stitched'"):
        oq.attribute(tp, cv, identity="user_id")


def test_stitching_without_a_user_id_column_is_refused() -> None:
    tp, cv = two_devices()
    with pytest.raises(SchemaError, match="needs a 'user_id' column"):
        oq.attribute(tp.drop("user_id"), cv.drop("user_id"), identity="stitched")


def test_a_float_user_id_is_refused() -> None:
    tp, cv = two_devices()
    with pytest.raises(SchemaError, match="'user_id' must hold strings"):
        oq.attribute(tp, cv.with_columns(pl.lit(1.5).alias("user_id")), identity="stitched")


def test_confusable_user_ids_are_warned_and_not_merged() -> None:
    tp, cv = two_devices()
    cv = cv.with_columns(pl.Series("user_id", ["u1 ", None]))  # "u1 " is not "u1"
    with pytest.warns(ConfusableIdWarning, match="user_id"):
        result = oq.attribute(tp, cv, models=["LINEAR"], identity="stitched")
    c1 = result.links.filter(pl.col("conversion_id") == "c1")
    assert c1.get_column("touchpoint_id").to_list() == ["t3"]  # the phone (u1) is another person
    assert result.identity.merged_anon_ids == 0


# --- against the reference -------------------------------------------------------------------------------

USER_IDS = st.one_of(
    st.none(),
    st.sampled_from(["U1", "U2", "U3", "", " ", "\t", "é", "e\u0301", "U1 ", "null", " Undefined", "0", "10"]),
)


@st.composite
def identified_cases(draw) -> Case:
    """``cases()`` with a user id drawn for every row: few user ids, blanks, ties and confusables."""
    case = draw(cases(max_touchpoints=20, max_conversions=6))
    for row in case.touchpoints + case.conversions:
        row["user_id"] = draw(USER_IDS)
    return case


def _frames(case: Case) -> tuple[pl.DataFrame, pl.DataFrame]:
    tp = touchpoints_frame(case.touchpoints, case.group_by)
    cv = conversions_frame(case.conversions, case.group_by)
    tp = tp.with_columns(pl.Series("user_id", [r["user_id"] for r in case.touchpoints], dtype=pl.String))
    cv = cv.with_columns(pl.Series("user_id", [r["user_id"] for r in case.conversions], dtype=pl.String))
    return tp, cv


@given(identified_cases())
@settings(deadline=None)
def test_stitch_map_matches_reference(case: Case) -> None:
    scope = case.group_by[:-1]
    tp, cv = _frames(case)
    rows = pl.concat(
        [tp.select(*scope, "anon_id", "occurred_at", "user_id"), cv.select(*scope, "anon_id", "occurred_at", "user_id")]
    )
    rows = rows.with_columns(
        pl.when(pl.col("user_id").str.contains(PLACEHOLDER_PATTERN))
        .then(None)
        .otherwise(pl.col("user_id"))
        .alias("user_id")
    )
    ours = {tuple(r[c] for c in (*scope, "anon_id")): r["user_id"] for r in stitch_map(rows, list(scope)).to_dicts()}
    to_int = [dict(r, occurred_at=r["occurred_at"]) for r in case.touchpoints + case.conversions]
    assert ours == stitch_map_reference(to_int, scope)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfusableIdWarning)
        _, _, summary = stitch(tp, cv, list(scope))
    assert summary.__dict__ == summary_reference(case.touchpoints, case.conversions, scope)


@given(identified_cases())
@settings(deadline=None)
def test_stitched_attribution_matches_reference(case: Case) -> None:
    """attribute(identity="stitched") is the reference attribution grouped by the reference's persons; the
    invariants hold and every conversion is either linked or unattributed."""
    scope = case.group_by[:-1]
    tp, cv = _frames(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfusableIdWarning)
        result = oq.attribute(
            tp,
            cv,
            models=[model_object(n, p) for n, p in case.models],
            lookback=timedelta(microseconds=case.lookback_us),
            reset_after_conversion=case.reset_after_conversion,
            direct_channels=case.direct_channels,
            identity="stitched",
        )
    ref_tp, ref_cv, _ = with_persons(case.touchpoints, case.conversions, scope)
    ref_links, ref_unattributed = attribute_reference(
        ref_tp, ref_cv, **{**case.kwargs(), "group_by": (*scope, "person")}
    )
    links = result.links.with_columns(pl.col("model", "channel").cast(pl.String)).to_dicts()
    check_invariants(links, {c["conversion_id"]: c for c in case.conversions})
    key = ("model", "conversion_id", "position")
    ours = {tuple(x[k] for k in key): x for x in links}
    theirs = {tuple(x[k] for k in key): x for x in ref_links}
    assert ours.keys() == theirs.keys()
    for k, mine in ours.items():
        assert mine["touchpoint_id"] == theirs[k]["touchpoint_id"], k
        assert math.isclose(mine["weight"], theirs[k]["weight"], rel_tol=1e-12, abs_tol=1e-15), k
    unattributed = {(r["conversion_id"], r["reason"]) for r in result.unattributed.to_dicts()}
    assert unattributed == {(r["conversion_id"], r["reason"]) for r in ref_unattributed}
    linked = {x["conversion_id"] for x in links}
    assert linked.isdisjoint({c for c, _ in unattributed})
    assert linked | {c for c, _ in unattributed} == {c["conversion_id"] for c in case.conversions}
    assert PERSON not in result.links.columns and PERSON not in result.unattributed.columns


def test_the_readme_stitching_example_runs_and_credits_the_phone() -> None:
    import re
    from pathlib import Path

    import pandas as pd

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if 'identity="stitched"' in b)
    scope: dict = {"pd": pd, "oq": oq}
    exec(compile(example, "README.md", "exec"), scope)  # noqa: S102 - our own README
    credit = scope["result"].credit.filter(pl.col("conversions") > 0)
    assert credit.get_column("channel").cast(pl.String).to_list() == ["paid_social"]
    assert scope["result"].identity.message().startswith("identity stitching: 2 anon ids merged into 1 person")


# --- optiq run: the user id from TrackingEvent.properties --------------------------------------------------


def _events(extra: list[dict] | None = None) -> pl.DataFrame:
    """The two devices as tracking events: the phone's ad click (anonymous), its login (a CUSTOM event with
    ``properties.userId``), the laptop's search click and its purchase (logged in), and a blank userId."""
    rows = [
        {
            "event_id": "e1",
            "anon_id": "phone",
            "occurred_at": _at(0),
            "type": "PAGE_VIEW",
            "utm_source": "facebook",
            "utm_medium": "paid_social",
            "properties": None,
            "value_micros": None,
        },
        {
            "event_id": "e2",
            "anon_id": "phone",
            "occurred_at": _at(2),
            "type": "CUSTOM",
            "utm_source": None,
            "utm_medium": None,
            "properties": '{"userId": "u1"}',
            "value_micros": None,
        },
        {
            "event_id": "e3",
            "anon_id": "laptop",
            "occurred_at": _at(4),
            "type": "PAGE_VIEW",
            "utm_source": "google",
            "utm_medium": "cpc",
            "properties": None,
            "value_micros": None,
        },
        {
            "event_id": "e4",
            "anon_id": "laptop",
            "occurred_at": _at(4) + timedelta(hours=1),
            "type": "CONVERSION",
            "utm_source": None,
            "utm_medium": None,
            "properties": '{"userId": "u1"}',
            "value_micros": 100_000_000,
        },
        {
            "event_id": "e5",
            "anon_id": "tablet",
            "occurred_at": _at(-1),
            "type": "PAGE_VIEW",
            "utm_source": "bing",
            "utm_medium": "cpc",
            "properties": '{"userId": " "}',
            "value_micros": None,
        },
    ]
    return pl.DataFrame(rows + (extra or []), schema_overrides={"value_micros": pl.Int64})


def _first_touch(url: str) -> dict[str, str]:
    import psycopg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """SELECT e."eventId", tp."utmSource" FROM "AttributionLink" al
               JOIN "TrackingEvent" e ON e.id = al."conversionId" JOIN "TouchPoint" tp ON tp.id = al."touchPointId"
               WHERE al.model = 'FIRST_TOUCH' AND al.weight = 1"""
        ).fetchall()
    return dict(rows)


@pytest.mark.postgres
def test_optiq_run_stitches_by_the_identity_key_and_restitches_on_a_new_login(postgres_url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    from optiq_engine.batch import run_batch
    from optiq_engine.io import db
    from optiq_engine.io.load import load_events
    from tests.support.pg import fresh_database

    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        load_events(_events(), url, organization_id="orgI", site_id="siteI", create=True)
        run_batch(url, organization_id="orgI", full=True, models=["FIRST_TOUCH", "LINEAR"])
        assert _first_touch(url) == {"e4": "google"}  # by cookie: the laptop's own click

        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as conn:
            conn.execute(
                """INSERT INTO "OrganizationSettings" (id, "organizationId", "attributionSettings")
                   VALUES ('stI', 'orgI', '{"identity": "stitched", "identityKey": "userId"}')"""
            )
        summary = run_batch(url, organization_id="orgI", models=["FIRST_TOUCH", "LINEAR"])
        assert summary.mode == "FULL"  # a stitched run restitches every user
        assert _first_touch(url) == {"e4": "facebook"}  # the phone's click before its login
        assert summary.identity == {
            "anon_ids": 3,
            "identified": 2,
            "persons": 2,
            "merged_anon_ids": 2,
            "merged_persons": 1,
            "several_user_ids": 0,
            "blank_user_ids": 1,
        }

        # The tablet logs in as u1 a day before the purchase: its bing click (the day before the phone's) becomes
        # u1's first touch,
        # and the stored links of e4 are rewritten.
        login = {
            "event_id": "e6",
            "anon_id": "tablet",
            "occurred_at": _at(3),
            "type": "CUSTOM",
            "utm_source": None,
            "utm_medium": None,
            "properties": '{"userId": "u1"}',
            "value_micros": None,
        }
        load_events(_events([login]), url, organization_id="orgI", site_id="siteI")
        summary = run_batch(url, organization_id="orgI", models=["FIRST_TOUCH", "LINEAR"])
        assert _first_touch(url) == {"e4": "bing"}  # the tablet's click, before its login
        with psycopg.connect(dsn) as conn:
            linear = conn.execute(
                """SELECT count(*), sum(al.weight) FROM "AttributionLink" al WHERE al.model = 'LINEAR'"""
            ).fetchone()
        assert linear[0] == 3 and linear[1] == pytest.approx(1.0)  # phone, tablet, laptop: one link each
        assert summary.identity["merged_anon_ids"] == 3


def test_spark_refuses_to_stitch_rather_than_split_persons() -> None:
    pytest.importorskip("pyspark")
    from optiq_engine.spark.attribution import attribute_spark

    with pytest.raises(ConfigError, match="identity='stitched' is not supported by attribute_spark"):
        attribute_spark(None, None, identity="stitched")  # refused before any frame is read


def test_optiq_attribute_identity_flag(tmp_path) -> None:
    from typer.testing import CliRunner

    from optiq_engine.cli import app

    tp, cv = two_devices()
    tp.write_parquet(tmp_path / "tp.parquet")
    cv.write_parquet(tmp_path / "cv.parquet")
    args = [
        "attribute",
        "--touchpoints",
        str(tmp_path / "tp.parquet"),
        "--conversions",
        str(tmp_path / "cv.parquet"),
        "-m",
        "FIRST_TOUCH",
        "--identity",
        "stitched",
    ]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "2 anon ids merged into 1 person" in result.output
    links = pl.read_parquet(tmp_path / "out" / "links.parquet").filter(pl.col("weight") == 1)
    assert dict(zip(links.get_column("conversion_id"), links.get_column("touchpoint_id"), strict=True)) == {
        "c1": "t1",
        "c2": "t4",
    }
    refused = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "x"), "--partitions", "2"])
    assert refused.exit_code == 2 and "use --partitions 1" in refused.output


def _random_events(seed: int) -> pl.DataFrame:
    """A dozen visitors over three weeks: visits from a few sources, logins (CUSTOM events with
    ``properties.userId``, some blank), and purchases (some logged in)."""
    import json
    import random

    rnd = random.Random(seed)
    sources = [("google", "cpc"), ("facebook", "paid_social"), ("newsletter", "email"), (None, None)]
    rows = []
    for i in range(90):
        kind = rnd.choices(["PAGE_VIEW", "CUSTOM", "CONVERSION"], weights=[6, 2, 2])[0]
        source, medium = rnd.choice(sources) if kind == "PAGE_VIEW" else (None, None)
        user = rnd.choice(["u1", "u2", "u3", "u4", " "]) if kind == "CUSTOM" or rnd.random() < 0.3 else None
        rows.append(
            {
                "event_id": f"e{i}",
                "anon_id": f"a{rnd.randrange(12)}",
                "type": kind,
                "occurred_at": _at(rnd.randrange(21 * 24) / 24),
                "utm_source": source,
                "utm_medium": medium,
                "properties": None if user is None else json.dumps({"userId": user}),
                "value_micros": rnd.randrange(1, 10**8) if kind == "CONVERSION" else None,
            }
        )
    return pl.DataFrame(rows, schema_overrides={"value_micros": pl.Int64})


@pytest.mark.postgres
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_optiq_run_stitched_equals_the_reference_persons(postgres_url: str, seed: int) -> None:
    """The links ``optiq run`` stores with stitching are those of attribute() on the same touchpoints with
    each anon id replaced by its person from tests/reference/identity.py."""
    import json

    import psycopg
    from sqlalchemy.engine import make_url

    from optiq_engine.batch import run_batch
    from optiq_engine.io import db
    from optiq_engine.io.load import load_events
    from tests.support.pg import fresh_database

    events = _random_events(seed)
    models = ["LINEAR", "FIRST_TOUCH", "TIME_DECAY"]
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        load_events(events, url, organization_id="orgR", site_id="siteR", create=True)
        summary = run_batch(url, organization_id="orgR", full=True, models=models, identity="stitched")
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as conn:
            stored = conn.execute(
                """SELECT e."eventId", tp."occurredAt", al.model::text, al.weight FROM "AttributionLink" al
                   JOIN "TrackingEvent" e ON e.id = al."conversionId" JOIN "TouchPoint" tp ON tp.id = al."touchPointId"
                   """
            ).fetchall()

    rows = [
        {**r, "user_id": json.loads(r["properties"])["userId"] if r["properties"] else None} for r in events.to_dicts()
    ]
    person = {r["anon_id"]: str(r["person"]) for r in with_persons(rows, [], ())[0]}
    tp = oq.extract_touchpoints(events, as_of=_at(30)).touchpoints
    cv = events.filter(pl.col("type") == "CONVERSION").select(
        pl.col("event_id").alias("conversion_id"), "anon_id", "occurred_at", "value_micros"
    )
    as_person = pl.col("anon_id").replace_strict(person)
    expected = oq.attribute(tp.with_columns(as_person), cv.with_columns(as_person), models=models)
    when = dict(zip(tp.get_column("touchpoint_id"), tp.get_column("occurred_at"), strict=True))
    ours = sorted((c, t, m, round(w, 12)) for c, t, m, w in stored)
    theirs = sorted(
        (r["conversion_id"], when[r["touchpoint_id"]], r["model"], round(r["weight"], 12))
        for r in expected.links.with_columns(pl.col("model").cast(pl.String)).to_dicts()
    )
    assert ours == theirs
    assert summary.identity["merged_anon_ids"] > 0  # the case exercises merges


def test_ties_go_to_the_greatest_user_id_and_quarantined_rows_identify_nothing() -> None:
    tp = pl.DataFrame(
        {
            "touchpoint_id": ["k1", "k2", "k3", "q1"],
            "anon_id": ["kiosk", "kiosk", "kiosk", "lost"],
            "occurred_at": [_at(1), _at(1), _at(0), _at(-1)],
            "channel": ["display", "display", "email", "video"],
            "user_id": ["u2", "u3", None, None],
        }
    )
    cv = pl.DataFrame(
        {
            "conversion_id": ["b2", "b3", "bad"],
            "anon_id": ["u2-phone", "u3-phone", "lost"],
            "occurred_at": ["2024-01-03T00:00:00Z", "2024-01-03T00:00:00Z", "not a time"],
            "value_micros": [1, 1, 1],
            "user_id": ["u2", "u3", "u3"],
        }
    )
    result = oq.attribute(tp, cv, models=["FIRST_TOUCH"], identity="stitched", on_invalid="quarantine")
    first = result.links.filter(pl.col("weight") == 1)
    # The kiosk's two identified rows are at the same time: "u3" > "u2", so the kiosk is u3's, its earlier
    # anonymous email touch included; the quarantined row would have made "lost" u3's too: it does not.
    assert dict(zip(first.get_column("conversion_id"), first.get_column("touchpoint_id"), strict=True)) == {"b3": "k3"}
    assert result.unattributed.get_column("conversion_id").to_list() == ["b2"]
    assert result.quarantined["conversions"].get_column("conversion_id").to_list() == ["bad"]
    assert result.identity.several_user_ids == 1
    assert (result.identity.merged_anon_ids, result.identity.merged_persons) == (2, 1)  # kiosk and u3-phone


def test_by_name_stitches_every_type_with_one_map() -> None:
    """The tablet is identified only by its sign-up: the purchase (another type) still sees the tablet's touch."""
    tp = pl.DataFrame(
        {
            "touchpoint_id": ["t_tab", "t_lap"],
            "anon_id": ["tablet", "laptop"],
            "occurred_at": [_at(1), _at(3)],
            "channel": ["display", "paid_search"],
        }
    )
    cv = pl.DataFrame(
        {
            "conversion_id": ["signup", "buy"],
            "anon_id": ["tablet", "laptop"],
            "occurred_at": [_at(2), _at(4)],
            "value_micros": [0, 5],
            "user_id": ["u1", "u1"],
            "name": ["signup", "purchase"],
        }
    )
    options = {"models": ["FIRST_TOUCH"], "identity": "stitched", "reset_after_conversion": False}
    whole = oq.attribute(tp, cv, **options)
    by_name = oq.attribute(tp, cv, by="name", **options)
    first = by_name.links.filter(pl.col("weight") == 1)
    assert dict(zip(first.get_column("conversion_id"), first.get_column("touchpoint_id"), strict=True)) == {
        "signup": "t_tab",
        "buy": "t_tab",
    }
    assert by_name.identity == whole.identity  # the counts of every type's rows


def test_placeholder_user_ids_identify_nobody() -> None:
    """A tag manager's "undefined" / "null" / "0" for a visitor who is not logged in is no identity: stitching
    by it joined 500 anon ids into one person and left 499 of 500 conversions outside their windows."""
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    n = 50
    tp = pl.DataFrame(
        {
            "touchpoint_id": [f"t{i}" for i in range(n)],
            "anon_id": [f"a{i}" for i in range(n)],
            "occurred_at": [t0 - timedelta(hours=i) for i in range(n)],
            "channel": ["email"] * n,
            "user_id": ["undefined", " NULL", "0", "None", "-"] * (n // 5),
        }
    )
    cv = pl.DataFrame(
        {
            "conversion_id": [f"c{i}" for i in range(n)],
            "anon_id": [f"a{i}" for i in range(n)],
            "occurred_at": [t0] * n,
            "value_micros": [1] * n,
            "user_id": ["null"] * n,
        }
    )
    result = oq.attribute(tp, cv, models=["LINEAR"], identity="stitched")
    assert result.identity.persons == n and result.identity.merged_anon_ids == 0
    assert result.identity.blank_user_ids == 2 * n
    assert result.unattributed.height == 0


def test_a_user_id_joining_many_anon_ids_is_warned_about_and_ga_placeholders_identify_nobody() -> None:
    """GA's "(not set)" for everyone not logged in joined 200 visitors into one person: LINEAR moved their
    credit across channels, silently. It is a placeholder now; an unknown one joining > 100 anon ids warns."""
    from optiq_engine.errors import OptiqWarning

    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    n = 200

    def frames(user_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        tp = pl.DataFrame(
            {
                "touchpoint_id": [f"t{i}" for i in range(n)],
                "anon_id": [f"a{i}" for i in range(n)],
                "occurred_at": [t0 - timedelta(hours=i) for i in range(n)],
                "channel": [f"ch{i % 5}" for i in range(n)],
                "user_id": [user_id] * n,
            }
        )
        cv = pl.DataFrame(
            {"conversion_id": ["c0"], "anon_id": ["a0"], "occurred_at": [t0], "value_micros": [1], "user_id": [user_id]}
        )
        return tp, cv

    result = oq.attribute(*frames("(not set)"), models=["LINEAR"], identity="stitched")
    assert result.identity.merged_anon_ids == 0 and result.identity.blank_user_ids == n + 1
    assert result.credit.filter(pl.col("conversions") > 0).get_column("channel").cast(str).to_list() == ["ch0"]
    with pytest.warns(OptiqWarning, match=r"'shared-login' \(200 anon ids\)"):
        oq.attribute(*frames("shared-login"), models=["LINEAR"], identity="stitched")
