"""Alert rules against a real Postgres: each type fires and stays quiet on crafted series, escalation,
auto-resolve, dismissal, notifications, per-field config errors, the lifecycle, and the scheduler with
concurrent workers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, create_engine, text

from optiq_engine.io import db, schema
from optiq_engine.service import alerts
from optiq_engine.service.anomaly import robust_zscore
from optiq_engine.service.errors import NotFoundError, PermissionDeniedError, RuleConfigError, TransitionError
from tests.support.pg import fresh_database
from tests.support.service_alert_data import NOW, day, seed_org, set_metrics

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def engine(postgres_url: str) -> Iterator[Engine]:
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        eng = create_engine(db.normalise_url(url), pool_size=8)
        yield eng
        eng.dispose()


def _rule(engine: Engine, org: str, type_: str, config: dict, **kwargs) -> str:
    with engine.begin() as conn:
        return alerts.create_rule(
            conn, organization_id=org, name=f"{type_} rule", type=type_, config=config, now=NOW, **kwargs
        )["id"]


def _evaluate(engine: Engine, org: str, rule_id: str, now=NOW) -> alerts.Evaluation:
    with engine.begin() as conn:
        return alerts.evaluate_now(conn, rule_id, organization_id=org, now=now)


def _events(engine: Engine, org: str) -> list[dict]:
    with engine.connect() as conn:
        return alerts.read_events(conn, organization_id=org)


def _notifications(engine: Engine, org: str) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            text('SELECT * FROM "InAppNotification" WHERE "organizationId" = :o ORDER BY "createdAt"'), {"o": org}
        )
        return [dict(r) for r in rows.mappings()]


# --- SPEND_THRESHOLD, with the whole open-event lifecycle ---------------------------------------------------------
def test_spend_threshold_fires_once_escalates_and_auto_resolves(engine) -> None:
    org = "spend1"
    with engine.begin() as conn:
        ids = seed_org(conn, org, metrics={day(0): (1000, 40, 15_000_000), day(-1): (1000, 40, 99_000_000)})
    rule = _rule(
        engine, org, "SPEND_THRESHOLD", {"threshold": 10_000_000, "period": "daily", "adAccountId": ids["account"]}
    )
    first = _evaluate(engine, org, rule)
    assert first.action == "opened"
    (event,) = _events(engine, org)
    assert (event["status"], event["severity"], event["id"]) == ("TRIGGERED", "WARNING", first.event_id)
    ctx = event["context"]
    assert (ctx["currentSpend"], ctx["threshold"], ctx["adAccountName"], ctx["currency"]) == (
        15_000_000,
        10_000_000,
        f"Account {org}",
        "USD",
    )
    assert (
        "15.00 USD" in event["message"]
        and "10.00 USD" in event["message"]
        and event["title"].startswith("Spend threshold exceeded")
    )
    notes = _notifications(engine, org)
    assert sorted(n["userId"] for n in notes) == [f"admin_{org}", f"viewer_{org}"]
    assert {n["priority"] for n in notes} == {"high"} and notes[0]["metadata"]["alertEventId"] == event["id"]
    assert notes[0]["actionUrl"] == f"/workspace/{org}/alerts/{event['id']}"
    # Still above the threshold: no second event.
    assert _evaluate(engine, org, rule, NOW + timedelta(hours=1)).action == "kept"
    assert len(_events(engine, org)) == 1
    # Twice the threshold: the open event escalates to CRITICAL.
    with engine.begin() as conn:
        set_metrics(conn, org, {day(0): (1000, 40, 20_000_000)})
    assert _evaluate(engine, org, rule, NOW + timedelta(hours=2)).action == "escalated"
    (event,) = _events(engine, org)
    assert event["severity"] == "CRITICAL" and event["context"]["escalatedContext"]["currentSpend"] == 20_000_000
    # Back under the threshold: auto-resolved, by nobody.
    with engine.begin() as conn:
        set_metrics(conn, org, {day(0): (1000, 40, 10_000_000)})
    assert _evaluate(engine, org, rule, NOW + timedelta(hours=3)).action == "resolved"
    (event,) = _events(engine, org)
    assert event["status"] == "RESOLVED" and event["resolvedBy"] is None and event["context"]["autoResolved"] is True
    assert _evaluate(engine, org, rule, NOW + timedelta(hours=4)).action == "ok"
    assert len(_notifications(engine, org)) == 6  # opened, escalated, resolved x 2 members


def test_spend_threshold_periods_and_notify_off(engine) -> None:
    org = "spend2"
    with engine.begin() as conn:
        seed_org(conn, org, metrics={day(-d): (100, 5, 2_000_000) for d in range(20)})
    daily = _rule(engine, org, "SPEND_THRESHOLD", {"threshold": 2_000_000}, notify_in_app=False)
    weekly = _rule(
        engine,
        org,
        "SPEND_THRESHOLD",
        {"threshold": 13_000_000, "period": "weekly"},
        notify_in_app=False,
        severity="INFO",
    )
    monthly = _rule(engine, org, "SPEND_THRESHOLD", {"threshold": 30_000_000, "period": "monthly"}, notify_in_app=False)
    assert _evaluate(engine, org, daily).action == "ok"  # 2 USD is not above 2 USD
    assert _evaluate(engine, org, weekly).action == "opened"  # 7 x 2 = 14 > 13
    assert _evaluate(engine, org, monthly).action == "ok"  # June 1..15: 15 x 2 = 30, not above 30
    (event,) = _events(engine, org)
    assert event["severity"] == "INFO" and event["context"]["from"] == str(day(-6))
    assert _notifications(engine, org) == []


# --- CONVERSION_DROP, CPA_SPIKE, ROAS_DROP on two periods -----------------------------------------------------
def _two_periods(
    engine, org, *, prev_conv: int, cur_conv: int, prev_spend: int, cur_spend: int, value: int = 10_000_000
) -> dict:
    metrics = {day(-d): (1000, 50, (cur_spend if d <= 7 else prev_spend) // 7) for d in range(1, 15)}
    conversions = {day(-3): [(value, 1.0)] * cur_conv, day(-10): [(value, 1.0)] * prev_conv}
    with engine.begin() as conn:
        return seed_org(conn, org, metrics=metrics, conversions=conversions)


@pytest.mark.parametrize(
    ("org", "prev", "cur", "drop", "action", "severity"),
    [
        ("cd_fire", 10, 3, 30, "opened", "CRITICAL"),
        ("cd_warn", 10, 6, 30, "opened", "WARNING"),
        ("cd_quiet", 10, 8, 30, "ok", None),
        ("cd_nobase", 0, 0, 30, "unknown", None),
    ],
)
def test_conversion_drop(engine, org, prev, cur, drop, action, severity) -> None:
    ids = _two_periods(engine, org, prev_conv=prev, cur_conv=cur, prev_spend=7_000_000, cur_spend=7_000_000)
    rule = _rule(
        engine,
        org,
        "CONVERSION_DROP",
        {"dropPercentage": drop, "comparisonPeriod": "7d", "campaignId": ids["campaign"]},
    )
    assert _evaluate(engine, org, rule).action == action
    events = _events(engine, org)
    assert [e["severity"] for e in events] == ([severity] if severity else [])
    if events:
        ctx = events[0]["context"]
        assert (ctx["currentConversions"], ctx["previousConversions"], ctx["campaignName"]) == (
            cur,
            prev,
            f"Campaign {org}",
        )
        assert ctx["actualDropPercentage"] == pytest.approx(100 * (prev - cur) / prev)
        assert (ctx["from"], ctx["to"]) == (str(day(-7)), str(day(-1)))


@pytest.mark.parametrize(
    ("org", "cur_spend", "action"), [("cpa_fire", 7_000_000, "opened"), ("cpa_quiet", 4_200_000, "ok")]
)
def test_cpa_spike(engine, org, cur_spend, action) -> None:
    # Previous CPA: 7 USD / 7 = 1 USD; current: cur_spend / 4.
    _two_periods(engine, org, prev_conv=7, cur_conv=4, prev_spend=7_000_000, cur_spend=cur_spend)
    rule = _rule(engine, org, "CPA_SPIKE", {"increasePercentage": 50})
    assert _evaluate(engine, org, rule).action == action
    if action == "opened":
        ctx = _events(engine, org)[0]["context"]
        assert (ctx["previousCpa"], ctx["currentCpa"]) == (1_000_000, 1_750_000)
        assert _events(engine, org)[0]["severity"] == "WARNING"  # +75% < 2 x 50%


@pytest.mark.parametrize(
    ("org", "config", "action"),
    [
        ("roas_min", {"minRoas": 6.0}, "opened"),
        ("roas_drop", {"dropPercentage": 40}, "opened"),
        ("roas_ok", {"dropPercentage": 60, "minRoas": 1}, "ok"),
    ],
)
def test_roas_drop(engine, org, config, action) -> None:
    # Previous ROAS 70 / 7 = 10; current 4 x 10 / 7 = 5.71 (a 43% drop).
    _two_periods(engine, org, prev_conv=7, cur_conv=4, prev_spend=7_000_000, cur_spend=7_000_000, value=10_000_000)
    rule = _rule(engine, org, "ROAS_DROP", config)
    assert _evaluate(engine, org, rule).action == action
    if action == "opened":
        ctx = _events(engine, org)[0]["context"]
        assert ctx["currentRoas"] == pytest.approx(40 / 7) and ctx["previousRoas"] == pytest.approx(10.0)


@pytest.mark.parametrize(
    "rule",
    [
        ("ROAS_DROP", {"minRoas": 6.0, "model": "MARKOV"}),
        ("CUSTOM", {"condition": {"metric": "roas", "operator": "<", "value": 6}, "model": "MARKOV"}),
    ],
)
def test_a_model_never_run_is_unknown_not_a_roas_of_zero(engine, rule) -> None:
    """The organization's links are LAST_TOUCH: a rule on MARKOV would read ROAS 0 and fire; it is unknown."""
    org = f"never_{rule[0].lower()}"
    _two_periods(engine, org, prev_conv=7, cur_conv=4, prev_spend=7_000_000, cur_spend=7_000_000)
    assert _evaluate(engine, org, _rule(engine, org, *rule)).action == "unknown"
    assert _events(engine, org) == []


# --- CLICK_ANOMALY ---------------------------------------------------------------------------------------------
BASELINE = [100, 104, 97, 101, 99, 103, 96, 100, 102, 98, 101, 150, 99, 100] * 2  # one past spike (150) stays harmless


@pytest.mark.parametrize(
    ("org", "yesterday", "config", "action"),
    [
        ("ca_spike", 180, {}, "opened"),
        ("ca_quiet", 106, {}, "ok"),
        ("ca_drop", 20, {"direction": "drop"}, "opened"),
        ("ca_dir", 180, {"direction": "drop"}, "ok"),
        ("ca_seasonal", 180, {"seasonal": True}, "opened"),
    ],
)
def test_click_anomaly(engine, org, yesterday, config, action) -> None:
    metrics = {day(-29 + i): (5000, c, 1_000_000) for i, c in enumerate(BASELINE)} | {
        day(-1): (5000, yesterday, 1_000_000)
    }
    with engine.begin() as conn:
        seed_org(conn, org, metrics=metrics)
    rule = _rule(engine, org, "CLICK_ANOMALY", {"baselineDays": 28, **config})
    assert _evaluate(engine, org, rule).action == action
    history = [metrics[day(-29 + i)][1] for i in range(28)]
    if config.get("seasonal"):
        history = history[::-1][6::7]
    expected = robust_zscore(yesterday, history)
    if action == "opened":
        ctx = _events(engine, org)[0]["context"]
        assert ctx["zScore"] == (pytest.approx(expected.z) if abs(expected.z) != float("inf") else None)
        assert ctx["baselineMedian"] == expected.median
        assert ctx["clicks"] == yesterday and ctx["date"] == str(day(-1))


def test_click_anomaly_missing_days_count_as_zero_and_flat_baselines() -> None:
    assert robust_zscore(5, [5] * 28).z == 0.0
    assert robust_zscore(6, [5] * 28).z == float("inf") and robust_zscore(6, [5] * 28).method == "flat"
    s = robust_zscore(10, [5] * 20 + [6, 7, 8, 9, 4, 3, 5, 5])  # more than half identical: MAD is 0
    assert s.method == "meanad" and s.z == pytest.approx((10 - 5) / (1.2533 * (1 + 2 + 3 + 4 + 1 + 2) / 28))


def test_click_anomaly_on_a_flat_series_and_with_too_little_data(engine) -> None:
    org = "ca_flat"
    with engine.begin() as conn:
        seed_org(conn, org, metrics={day(-d): (1000, 50, 1) for d in range(2, 30)} | {day(-1): (1000, 0, 0)})
    rule = _rule(engine, org, "CLICK_ANOMALY", {})
    assert _evaluate(engine, org, rule).action == "opened"
    (event,) = _events(engine, org)
    assert (
        event["context"]["zScore"] is None and event["context"]["method"] == "flat" and event["severity"] == "CRITICAL"
    )
    with engine.begin() as conn:
        seed_org(conn, "ca_empty")
    assert _evaluate(engine, "ca_empty", _rule(engine, "ca_empty", "CLICK_ANOMALY", {})).action == "unknown"


# --- CUSTOM -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("org", "condition", "action"),
    [
        ("cu_cpa", {"metric": "cpa_micros", "operator": ">", "value": 1_500_000, "period": "7d"}, "opened"),
        (
            "cu_and",
            {
                "all": [
                    {"metric": "clicks", "operator": ">=", "value": 350, "period": "7d"},
                    {"metric": "conversions", "operator": "<", "value": 4, "period": "7d"},
                ]
            },
            "ok",
        ),
        (
            "cu_or",
            {
                "any": [
                    {"metric": "ctr", "operator": "<", "value": 0.01, "period": "7d"},
                    {
                        "metric": "conversions",
                        "operator": "<=",
                        "value": -42,
                        "period": "7d",
                        "compare": "changePercent",
                    },
                ]
            },
            "opened",
        ),
        (
            "cu_null",
            {"metric": "roas", "operator": "<", "value": 1},
            "unknown",
        ),  # yesterday has no spend: ROAS undefined
    ],
)
def test_custom_conditions(engine, org, condition, action) -> None:
    # Current 7 days: 350 clicks, 7 USD, 4 conversions (CPA 1.75 USD); previous: 7 conversions; yesterday: 50 clicks.
    _two_periods(engine, org, prev_conv=7, cur_conv=4, prev_spend=7_000_000, cur_spend=7_000_000)
    if org == "cu_null":
        with engine.begin() as conn:
            set_metrics(conn, org, {day(-1): (0, 0, 0)})
    rule = _rule(engine, org, "CUSTOM", {"condition": condition})
    assert _evaluate(engine, org, rule).action == action
    if action == "opened":
        ctx = _events(engine, org)[0]["context"]
        assert any(c["holds"] for c in ctx["conditions"])


# --- dismissal, lifecycle -------------------------------------------------------------------------------------------
def test_dismissed_alert_stays_quiet_until_the_condition_clears(engine) -> None:
    org = "dismiss"
    with engine.begin() as conn:
        seed_org(conn, org, metrics={day(0): (10, 1, 5_000_000)})
    rule = _rule(engine, org, "SPEND_THRESHOLD", {"threshold": 1_000_000})
    event_id = _evaluate(engine, org, rule).event_id
    with engine.begin() as conn:
        done = alerts.dismiss(conn, event_id, organization_id=org, by=f"admin_{org}", now=NOW + timedelta(minutes=5))
    assert (done["status"], done["dismissedBy"]) == ("DISMISSED", f"admin_{org}")
    assert _evaluate(engine, org, rule, NOW + timedelta(hours=1)).action == "suppressed"
    with engine.begin() as conn:
        set_metrics(conn, org, {day(0): (10, 1, 0)})
    assert _evaluate(engine, org, rule, NOW + timedelta(hours=2)).action == "cleared"
    with engine.begin() as conn:
        set_metrics(conn, org, {day(0): (10, 1, 5_000_000)})
    again = _evaluate(engine, org, rule, NOW + timedelta(hours=3))
    assert again.action == "opened" and again.event_id != event_id
    assert [e["status"] for e in _events(engine, org)] == ["TRIGGERED", "DISMISSED"]


def test_lifecycle_transitions_who_and_when_and_refusals(engine) -> None:
    org, other = "life", "life_other"
    with engine.begin() as conn:
        seed_org(conn, org, metrics={day(0): (10, 1, 5_000_000)})
        seed_org(conn, other)
    rule = _rule(engine, org, "SPEND_THRESHOLD", {"threshold": 1_000_000})
    event_id = _evaluate(engine, org, rule).event_id
    admin, viewer = f"admin_{org}", f"viewer_{org}"
    with engine.begin() as conn:
        with pytest.raises(PermissionDeniedError, match="VIEWER"):
            alerts.acknowledge(conn, event_id, organization_id=org, by=viewer)
        with pytest.raises(PermissionDeniedError, match="not a member"):
            alerts.acknowledge(conn, event_id, organization_id=org, by=f"admin_{other}")
        with pytest.raises(NotFoundError):
            alerts.acknowledge(conn, event_id, organization_id=other, by=f"admin_{other}")
        acked = alerts.acknowledge(conn, event_id, organization_id=org, by=admin, now=NOW + timedelta(minutes=1))
        assert (acked["status"], acked["acknowledgedBy"], acked["acknowledgedAt"]) == (
            "ACKNOWLEDGED",
            admin,
            (NOW + timedelta(minutes=1)).isoformat(),
        )
        with pytest.raises(TransitionError, match="it is ACKNOWLEDGED, and only TRIGGERED"):
            alerts.acknowledge(conn, event_id, organization_id=org, by=admin)
    # An acknowledged event is still open: the rule opens nothing new.
    assert _evaluate(engine, org, rule, NOW + timedelta(hours=1)).action == "kept"
    with engine.begin() as conn:
        resolved = alerts.resolve(conn, event_id, organization_id=org, by=admin, now=NOW + timedelta(hours=2))
        assert (resolved["status"], resolved["resolvedBy"]) == ("RESOLVED", admin)
        for op in (alerts.acknowledge, alerts.resolve, alerts.dismiss):
            with pytest.raises(TransitionError, match="it is RESOLVED"):
                op(conn, event_id, organization_id=org, by=admin)
        with pytest.raises(NotFoundError):
            alerts.resolve(conn, "nope", organization_id=org, by=admin)
    # Resolved by hand while the spend is still over: the next evaluation fires again.
    assert _evaluate(engine, org, rule, NOW + timedelta(hours=3)).action == "opened"


# --- configs ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("type_", "config", "fields"),
    [
        ("SPEND_THRESHOLD", {}, {"config.threshold"}),
        (
            "SPEND_THRESHOLD",
            {"threshold": 1.5, "period": "hourly", "adAccountID": "x"},
            {"config.threshold", "config.period", "config.adAccountID"},
        ),
        (
            "CONVERSION_DROP",
            {"dropPercentage": 130, "comparisonPeriod": "1w"},
            {"config.dropPercentage", "config.comparisonPeriod"},
        ),
        ("CPA_SPIKE", {"increasePercentage": "50"}, {"config.increasePercentage"}),
        ("ROAS_DROP", {"comparisonPeriod": "7d"}, {"config.dropPercentage"}),
        ("ROAS_DROP", {"dropPercentage": None, "minRoas": None}, {"config.dropPercentage"}),  # a rule that never fires
        (
            "CLICK_ANOMALY",
            {"threshold": 0, "direction": "up", "baselineDays": 3},
            {"config.threshold", "config.direction", "config.baselineDays"},
        ),
        (
            "CUSTOM",
            {"condition": {"any": [{"metric": "cpa", "operator": ">", "value": 1}, {"metric": "roas"}]}},
            {"config.condition.any[0].metric", "config.condition.any[1].operator", "config.condition.any[1].value"},
        ),
        (
            "CUSTOM",
            {"condition": "spend > 5 or __import__('os')"},
            {"config.condition.metric", "config.condition.operator", "config.condition.value", "config.condition"},
        ),
        ("SPEND_THRESHOLD", {"threshold": 5, "campaignId": "cmp_cfg_other"}, {"config.campaignId"}),
    ],
)
def test_invalid_configs_give_one_error_per_field(engine, type_, config, fields) -> None:
    with engine.begin() as conn:
        if not conn.execute(text("SELECT 1 FROM \"Organization\" WHERE id = 'cfg'")).first():
            seed_org(conn, "cfg")
            seed_org(conn, "cfg_other")
        with pytest.raises(RuleConfigError) as info:
            alerts.create_rule(conn, organization_id="cfg", name="r", type=type_, config=config)
    assert set(info.value.errors) == fields, info.value.errors
    assert isinstance(info.value, ValueError)


def test_invalid_rule_fields(engine) -> None:
    with engine.begin() as conn, pytest.raises(RuleConfigError) as info:
        alerts.create_rule(
            conn, organization_id="x", name=" ", type="NOPE", config={}, severity="LOUD", evaluation_interval=5
        )
    assert set(info.value.errors) == {"name", "type", "severity", "evaluationInterval"}


# --- scheduling -------------------------------------------------------------------------------------------------
def test_only_due_active_rules_are_evaluated(engine) -> None:
    org = "sched"
    with engine.begin() as conn:
        seed_org(conn, org, metrics={day(0): (10, 1, 5_000_000)})
    fresh = _rule(engine, org, "SPEND_THRESHOLD", {"threshold": 1})
    recent = _rule(engine, org, "SPEND_THRESHOLD", {"threshold": 1}, evaluation_interval=3600)
    paused = _rule(engine, org, "SPEND_THRESHOLD", {"threshold": 1}, status="PAUSED")
    with engine.begin() as conn:
        conn.execute(
            text('UPDATE "AlertRule" SET "lastEvaluatedAt" = :t WHERE id = :id'),
            {"t": NOW - timedelta(minutes=59), "id": recent},
        )
    done = alerts.evaluate_due(engine, organization_id=org, now=NOW)
    assert [(e.rule_id, e.action) for e in done] == [(fresh, "opened")]
    assert alerts.evaluate_due(engine, organization_id=org, now=NOW) == []
    later = alerts.evaluate_due(engine, organization_id=org, now=NOW + timedelta(minutes=1))
    assert [(e.rule_id, e.action) for e in later] == [(recent, "opened")]
    assert paused not in {e["alertRuleId"] for e in _events(engine, org)}


def test_four_concurrent_workers_evaluate_each_due_rule_once(engine) -> None:
    orgs = [f"conc{i}" for i in range(3)]
    rules = []
    with engine.begin() as conn:
        for org in orgs:
            seed_org(conn, org, metrics={day(0): (10, 1, 5_000_000), day(-1): (10, 1, 5_000_000)})
    for org in orgs:
        for threshold in range(1, 6):
            rules.append(_rule(engine, org, "SPEND_THRESHOLD", {"threshold": threshold}))
            rules.append(
                _rule(
                    engine,
                    org,
                    "CUSTOM",
                    {"condition": {"metric": "spend_micros", "operator": ">", "value": threshold}},
                )
            )
    for round_, now in enumerate((NOW, NOW + timedelta(seconds=30), NOW + timedelta(hours=1, seconds=1))):
        barrier = threading.Barrier(4)
        results: list[list[alerts.Evaluation]] = [[] for _ in range(4)]

        def work(i: int, now=now, barrier=barrier, results=results) -> None:
            worker = create_engine(engine.url, pool_size=1)
            barrier.wait()
            results[i] = alerts.evaluate_due(worker, now=now)
            worker.dispose()

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        evaluated = [e.rule_id for r in results for e in r if e.organization_id in orgs]
        if round_ == 1:
            assert evaluated == []  # nothing due 30 s later
            continue
        assert sorted(evaluated) == sorted(rules)  # every due rule exactly once
        expected = "opened" if round_ == 0 else "kept"
        assert {e.action for r in results for e in r if e.organization_id in orgs} == {expected}
    with engine.connect() as conn:
        counts = conn.execute(
            text('SELECT "alertRuleId", count(*) FROM "AlertEvent" WHERE "organizationId" = ANY(:orgs) GROUP BY 1'),
            {"orgs": orgs},
        ).all()
        assert len(counts) == len(rules) and {n for _, n in counts} == {1}
        (notes,) = conn.execute(
            text('SELECT count(*) FROM "InAppNotification" WHERE "organizationId" = ANY(:orgs)'), {"orgs": orgs}
        ).one()
    assert notes == 2 * len(rules)


def test_spend_threshold_of_an_organization_without_ad_accounts_is_clear(engine) -> None:
    """Tracking only: the organization's spend is null (not 0) in the metrics; the rule is clear, not an error."""
    from tests.support.service_data import no_campaign_rows

    with engine.begin() as conn:
        for table, rows in no_campaign_rows().items():
            for row in rows:
                conn.execute(schema.metadata.tables[table].insert(), row)
    rule = _rule(engine, "orgN", "SPEND_THRESHOLD", {"threshold": 1})
    evaluation = _evaluate(engine, "orgN", rule, datetime(2024, 3, 8, 18, tzinfo=UTC))
    assert (evaluation.action, evaluation.error) == ("ok", None)
