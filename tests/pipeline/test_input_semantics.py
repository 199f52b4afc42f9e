"""No silent wrong numbers (docs/contract.md §1.1-§1.4): money units, timestamp spellings and zones, identity.

Each case is one a new user met with a hand-made frame: it is either computed correctly or refused with one
line that says what to change.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import optiq_engine as oq
from optiq_engine.errors import ConfusableIdWarning, NaiveTimestampWarning
from optiq_engine.frames import normalize_conversions, normalize_touchpoints


def _touchpoints(**cols) -> pd.DataFrame:
    base = {
        "touchpoint_id": ["t1", "t2", "t3"],
        "anon_id": ["alice", "alice", "bob"],
        "occurred_at": ["2024-01-05T09:00:00Z", "2024-01-08T12:00:00Z", "2024-01-07T10:00:00Z"],
        "channel": ["display", "email", "organic_search"],
    }
    base.update(cols)
    return pd.DataFrame(base)


def _conversions(**cols) -> pd.DataFrame:
    base = {
        "conversion_id": ["c1", "c2"],
        "anon_id": ["alice", "bob"],
        "occurred_at": ["2024-01-09T09:00:00Z", "2024-01-09T10:00:00Z"],
        "value_micros": [30_220_000, 12_000_000],
    }
    base.update(cols)
    return pd.DataFrame(base)


def _dollars(result: oq.AttributionResult, model: str = "LINEAR") -> dict[str, float]:
    credit = result.credit.filter(pl.col("model") == model)
    return {str(c): v / 1e6 for c, v in zip(credit["channel"], credit["value_micros"], strict=True) if v}


# --- money ---------------------------------------------------------------------------------------------


def test_a_revenue_column_beside_no_value_micros_is_named_not_ignored() -> None:
    cv = _conversions(revenue=[30.22, 12.0]).drop(columns="value_micros")
    with pytest.raises(oq.SchemaError, match=r"'revenue' looks like money.*value_column='revenue'"):
        oq.attribute(_touchpoints(), cv, models=["LINEAR"])


@pytest.mark.parametrize("name", ["order_total", "grand_total", "subtotal", "cartTotal", "aov", "Umsatz", "earnings"])
def test_an_order_total_beside_no_value_micros_is_named_not_ignored(name: str) -> None:
    """An e-commerce export's order_total was ignored: every conversion credited 0, with no word."""
    cv = _conversions(**{name: [30.22, 12.0]}).drop(columns="value_micros")
    with pytest.raises(oq.SchemaError, match=f"'{name}' looks like money"):
        oq.attribute(_touchpoints(), cv, models=["LINEAR"])
    counts = _conversions(total_items=[3, 1]).drop(columns="value_micros")  # a count is not money
    assert oq.attribute(_touchpoints(), counts, models=["LINEAR"], timezone="UTC").credit.height


def test_missing_amounts_in_a_currency_column_count_as_zero_with_a_warning() -> None:
    """pandas NaN revenue (pandas' null) was credited 0 in silence, where polars' NaN is refused."""
    from optiq_engine.errors import OptiqWarning

    cv = _conversions(revenue=[np.nan, 12.0]).drop(columns="value_micros")
    with pytest.warns(OptiqWarning, match="1 of 2 'revenue' values are missing"):
        result = oq.attribute(_touchpoints(), cv, models=["LINEAR"], value_column="revenue", value_unit="currency")
    assert result.credit.get_column("value_micros").sum() == 12_000_000


def test_dollars_are_converted_exactly_when_the_caller_says_so() -> None:
    cv = _conversions(revenue=[30.22, 12.0]).drop(columns="value_micros")
    result = oq.attribute(_touchpoints(), cv, models=["LINEAR"], value_column="revenue", value_unit="currency")
    assert _dollars(result) == {"display": 15.11, "email": 15.11, "organic_search": 12.0}
    links = result.links
    assert links["credited_value_micros"].sum() == 42_220_000  # exact: no binary float on the way


@pytest.mark.parametrize("values", [[0.1, 0.2], ["0.10", "0.20"], [pd.NA, 0.2]], ids=["floats", "strings", "missing"])
def test_currency_values_of_any_spelling_are_exact(values) -> None:
    cv = _conversions(amount=pd.array(values, dtype=object)).drop(columns="value_micros")
    norm = normalize_conversions(cv, value_column="amount", value_unit="currency")
    expected = [100_000 if values[0] is not pd.NA else 0, 200_000]
    assert norm.frame["value_micros"].to_list() == expected


def test_a_unit_that_contradicts_the_column_is_refused() -> None:
    """A factor of a million either way, silently, before 2026-12-08 (a new user's audit): value_unit='currency'
    on value_micros made an order of 49.99 worth 49,990,000; integer dollars in a column named revenue were
    read as micros (50 -> 0.00005). The name says micros, or the values are under a cent as micros."""
    with pytest.raises(oq.SchemaError, match=r"'value_micros' is named as micros.*drop value_unit='currency'"):
        oq.attribute(_touchpoints(), _conversions(), models=["LINEAR"], value_unit="currency")
    cv = _conversions(revenue_micros=[30_220_000, 12_000_000]).drop(columns="value_micros")
    with pytest.raises(oq.SchemaError, match=r"'revenue_micros' is named as micros"):
        oq.attribute(_touchpoints(), cv, models=["LINEAR"], value_column="revenue_micros", value_unit="currency")
    dollars = _conversions(revenue=[30, 12]).drop(columns="value_micros")
    with pytest.raises(oq.SchemaError, match=r"median value 21 would be 2.1e-05 currency units.*value_unit='currency'"):
        oq.attribute(_touchpoints(), dollars, models=["LINEAR"], value_column="revenue")
    assert _dollars(
        oq.attribute(_touchpoints(), dollars, models=["LINEAR"], value_column="revenue", value_unit="currency")
    ) == {"display": 15.0, "email": 15.0, "organic_search": 12.0}
    tiny = _conversions(revenue_micros=[30, 12]).drop(columns="value_micros")  # the name says micros: read so
    result = oq.attribute(_touchpoints(), tiny, models=["LINEAR"], value_column="revenue_micros")
    assert result.credit.get_column("value_micros").sum() == 42
    # a decimal with places is amounts like 49.99 (SQL NUMERIC(12, 2)); a column named cents is neither unit
    decimals = pl.from_pandas(_conversions()).drop("value_micros")
    decimals = decimals.with_columns(revenue=pl.Series([Decimal("30.22"), Decimal("12.00")], dtype=pl.Decimal(12, 2)))
    with pytest.raises(oq.SchemaError, match=r"decimal with 2 decimal places.*pass value_unit='currency'"):
        oq.attribute(_touchpoints(), decimals, models=["LINEAR"], value_column="revenue")
    assert _dollars(
        oq.attribute(_touchpoints(), decimals, models=["LINEAR"], value_column="revenue", value_unit="currency")
    ) == {"display": 15.11, "email": 15.11, "organic_search": 12.0}
    cents = _conversions(amount_cents=[3_022, 1_200]).drop(columns="value_micros")
    for unit, how in (("micros", "10,000 times too small"), ("currency", "100 times too large")):
        with pytest.raises(oq.SchemaError, match=rf"named as cents.*{how}.*amount_cents \* 10_000"):
            oq.attribute(_touchpoints(), cents, models=["LINEAR"], value_column="amount_cents", value_unit=unit)
    micros = _conversions(revenue=[30_220_000, 0]).drop(columns="value_micros")  # plausible micros: read so
    result = oq.attribute(_touchpoints(), micros, models=["LINEAR"], value_column="revenue")
    assert result.credit.get_column("value_micros").sum() == 30_220_000


def test_frames_that_share_no_user_are_said_to() -> None:
    """Integer ids from one file and zero-padded strings from the other: nothing matched and every conversion
    was unattributed without a word (a new user's audit, 2026-12-08)."""
    from optiq_engine.errors import OptiqWarning

    tp = _touchpoints(anon_id=[7, 7, 8])
    cv = _conversions(anon_id=["007", "008"])
    with pytest.warns(OptiqWarning, match=r"none of the 2 conversions' users has a touchpoint.*\['007'\].*\['7'\]"):
        result = oq.attribute(tp, cv, models=["LINEAR"])
    assert result.unattributed.height == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptiqWarning)
        oq.attribute(_touchpoints(anon_id=[7, 7, 8]), _conversions(anon_id=["7", "008"]), models=["LINEAR"])


def test_whole_dollar_floats_in_value_micros_are_refused_with_the_conversion() -> None:
    with pytest.raises(oq.SchemaError, match=r"integer micros.*3_022_000_000 micros.*value_unit='currency'"):
        oq.attribute(_touchpoints(), _conversions(value_micros=[3022.0, 12.0]), models=["LINEAR"])


def test_a_float_of_1e19_is_refused_as_a_float_not_called_non_integer() -> None:
    with pytest.raises(oq.SchemaError, match="integer micros"):
        normalize_conversions(_conversions(value_micros=[1e19, 1.0]))


def test_values_past_int64_are_invalid_rows_never_wrapped() -> None:
    cv = pl.from_pandas(_conversions()).with_columns(pl.Series("value_micros", [2**63, 5], dtype=pl.UInt64))
    with pytest.raises(oq.InputError, match="value_micros out of range: 1"):
        normalize_conversions(cv)
    kept = normalize_conversions(cv, on_invalid="quarantine")
    assert kept.frame["value_micros"].to_list() == [5]
    assert kept.quarantined["reason"].to_list() == ["value_micros out of range"]


def test_a_pandas_object_column_holding_huge_ints_is_one_clear_error() -> None:
    cv = _conversions(value_micros=pd.array([1, 10**20], dtype=object))
    with pytest.raises(oq.OptiqError, match="value_micros"):
        normalize_conversions(cv)
    cv = _conversions(value_micros=pd.array([1, 2**63], dtype=object))
    with pytest.raises(oq.OptiqError, match="value_micros"):
        normalize_conversions(cv)


def test_currency_with_more_than_six_decimals_is_an_invalid_row() -> None:
    cv = _conversions(value=[1.0000001, 2.5]).drop(columns="value_micros")
    with pytest.raises(oq.InputError, match="more than 6 decimal places in value: 1"):
        normalize_conversions(cv, value_column="value", value_unit="currency")


def test_bad_value_options_are_config_errors() -> None:
    with pytest.raises(oq.ConfigError, match="value_unit"):
        oq.AttributionConfig(value_unit="dollars")
    with pytest.raises(oq.SchemaError, match="'revenue'"):
        normalize_conversions(_conversions(), value_column="revenue", value_unit="currency")


# --- time ------------------------------------------------------------------------------------------------


def test_us_style_dates_are_refused_not_read_day_first() -> None:
    tp = _touchpoints(occurred_at=["01/05/2024 09:00", "01/08/2024 12:00", "01/07/2024 10:00"])
    with pytest.raises(oq.InputError, match=r"unparseable occurred_at: 3.*docs/contract.md"):
        oq.attribute(tp, _conversions(), models=["LINEAR"])


def test_an_explicit_format_reads_us_dates_month_first() -> None:
    tp = _touchpoints(occurred_at=["01/05/2024 09:00", "01/08/2024 12:00", "01/07/2024 10:00"])
    cv = _conversions(occurred_at=["01/09/2024 09:00", "01/09/2024 10:00"])
    result = oq.attribute(tp, cv, models=["LINEAR"], timestamp_format="%m/%d/%Y %H:%M", timezone="UTC")
    assert result.unattributed.height == 0
    assert result.links.height == 3  # 9 January, not 1 September: every touch is in the window


def test_iso_spellings_are_read_row_by_row() -> None:
    spellings = [
        "2024-01-05",
        "2024-01-09T09:00:00Z",
        "2024-01-09 09:00:00.123456+02:00",
        "2024-01-09T09:00",
        "2024-01-09T09:00:00+0530",
        "20240109T090000Z",
        "2024-01-09T09:00:00-05",
    ]
    frame = pd.DataFrame(
        {"touchpoint_id": [f"t{i}" for i in range(len(spellings))], "anon_id": "a", "occurred_at": spellings}
    )
    out = normalize_touchpoints(frame, timezone="UTC").frame["occurred_at"].to_list()
    assert out == [
        datetime(2024, 1, 5, tzinfo=UTC),
        datetime(2024, 1, 9, 9, tzinfo=UTC),
        datetime(2024, 1, 9, 7, 0, 0, 123456, tzinfo=UTC),
        datetime(2024, 1, 9, 9, tzinfo=UTC),
        datetime(2024, 1, 9, 3, 30, tzinfo=UTC),
        datetime(2024, 1, 9, 9, tzinfo=UTC),
        datetime(2024, 1, 9, 14, tzinfo=UTC),
    ]


def test_naive_times_are_utc_with_a_warning_or_local_with_timezone() -> None:
    tp = _touchpoints(occurred_at=["2024-01-05 09:00", "2024-01-08 12:00", "2024-01-07 10:00"])
    with pytest.warns(NaiveTimestampWarning, match="3 occurred_at value"):
        utc = normalize_touchpoints(tp).frame["occurred_at"][0]
    assert utc == datetime(2024, 1, 5, 9, tzinfo=UTC)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ny = normalize_touchpoints(tp, timezone="America/New_York").frame["occurred_at"][0]
        assert normalize_touchpoints(tp, timezone="UTC").frame["occurred_at"][0] == utc
    assert ny == datetime(2024, 1, 5, 14, tzinfo=UTC)


def test_a_local_time_skipped_by_daylight_saving_is_an_invalid_row() -> None:
    tp = _touchpoints(occurred_at=["2024-03-10 02:30", "2024-03-10 03:30", "2024-11-03 01:30"])
    with pytest.raises(oq.InputError) as info:
        normalize_touchpoints(tp, timezone="America/New_York")
    assert info.value.counts == {"nonexistent or ambiguous local occurred_at": 2}


def test_an_object_column_mixing_zoned_and_naive_times_is_refused() -> None:
    """pandas object column [09:00Z, 11:00 naive] with timezone New York: polars gave every value the first
    one's kind, so 11:00 was read as 11:00Z (or 09:00Z as 09:00 New York), by row order, silently."""
    aware, naive = datetime(2024, 1, 5, 9, tzinfo=UTC), datetime(2024, 1, 5, 11)
    for values in ([aware, naive, aware], [naive, aware, naive]):
        tp = _touchpoints(occurred_at=pd.Series(values, dtype=object))
        with pytest.raises(oq.SchemaError, match="mixes times with and without a time zone"):
            normalize_touchpoints(tp, timezone="America/New_York")
    one_kind = _touchpoints(occurred_at=pd.Series([aware, aware, None], dtype=object))
    assert normalize_touchpoints(one_kind, on_invalid="quarantine").frame["occurred_at"].to_list() == [aware] * 2


def test_zone_names_in_a_format_are_refused_and_epoch_seconds_are_utc() -> None:
    """'09:00 EST' with %Z was read as 09:00 UTC (polars drops the name); '%s' epoch text was read as a
    local time of timezone=, 5 hours off in New York."""
    with pytest.raises(oq.ConfigError, match="%Z"):
        oq.AttributionConfig(timestamp_format="%m/%d/%Y %H:%M %Z")
    tp = _touchpoints(occurred_at=["01/05/2024 09:00 EST"] * 3)
    with pytest.raises(oq.ConfigError, match="%Z"):
        normalize_touchpoints(tp, timestamp_format="%m/%d/%Y %H:%M %Z")
    epoch = _touchpoints(occurred_at=["1704445200"] * 3)  # 2024-01-05 09:00:00Z
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no time zone" warning: epoch seconds are UTC
        got = normalize_touchpoints(epoch, timestamp_format="%s", timezone="America/New_York").frame
    assert got["occurred_at"][0] == datetime(2024, 1, 5, 9, tzinfo=UTC)


def test_unknown_timezone_is_a_config_error() -> None:
    with pytest.raises(oq.ConfigError, match="IANA"):
        oq.AttributionConfig(timezone="Mars/Olympus")


_SPELLINGS = [
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    lambda d: d.strftime("%Y-%m-%d %H:%M:%S.%f+00:00"),
    lambda d: d.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(),
    lambda d: d.astimezone(timezone(timedelta(hours=-8))).strftime("%Y-%m-%dT%H:%M:%S.%f%z"),
    lambda d: d.strftime("%Y%m%dT%H%M%S.%fZ"),
]


@given(
    st.lists(
        st.tuples(
            st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2199, 1, 1)),
            st.integers(0, len(_SPELLINGS) - 1),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_any_mix_of_iso_spellings_reads_as_datetime_fromisoformat(rows) -> None:
    moments = [d.replace(tzinfo=UTC) for d, _ in rows]
    texts = [_SPELLINGS[k](m) for m, (_, k) in zip(moments, rows, strict=True)]
    frame = pl.DataFrame({"touchpoint_id": [str(i) for i in range(len(rows))], "anon_id": "a", "occurred_at": texts})
    out = normalize_touchpoints(frame).frame["occurred_at"].to_list()
    assert out == [datetime.fromisoformat(t).astimezone(UTC) for t in texts] == moments


# --- identity ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_empty_or_blank_anon_ids_and_ids_are_invalid(blank: str) -> None:
    with pytest.raises(oq.InputError, match="empty anon_id: 1"):
        oq.attribute(_touchpoints(anon_id=["alice", blank, "bob"]), _conversions(), models=["LINEAR"])
    with pytest.raises(oq.InputError, match="empty conversion_id: 1"):
        normalize_conversions(_conversions(conversion_id=["c1", blank]))
    kept = oq.attribute(
        _touchpoints(anon_id=["alice", blank, "bob"]),
        _conversions(anon_id=["alice", blank]),
        models=["LINEAR"],
        on_invalid="quarantine",
    )
    assert kept.quarantined["touchpoints"]["reason"].to_list() == ["empty anon_id"]
    assert kept.quarantined["conversions"]["reason"].to_list() == ["empty anon_id"]
    assert set(kept.links["touchpoint_id"].to_list()) == {"t1"}  # no link to another visitor's touch


def test_ids_differing_by_spaces_or_normalisation_stay_apart_with_a_warning() -> None:
    composed, decomposed = "jos\u00e9", "jose\u0301"
    tp = _touchpoints(anon_id=[composed, composed, "bob"])
    cv = _conversions(anon_id=[decomposed, "bob "])
    with pytest.warns(ConfusableIdWarning, match="4 distinct anon_id"):
        result = oq.attribute(tp, cv, models=["LINEAR"])
    assert result.unattributed.height == 2  # kept exactly as given: not silently merged either


def test_plain_ascii_ids_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfusableIdWarning)
        oq.attribute(_touchpoints(), _conversions(), models=["LINEAR"])


# --- crashes that are now answers --------------------------------------------------------------------------


def test_no_channel_and_no_utm_columns_is_direct() -> None:
    result = oq.attribute(_touchpoints().drop(columns="channel"), _conversions(), models=["LINEAR"])
    assert set(result.links["channel"].cast(pl.String).to_list()) == {"direct"}
    assert result.links.height == 3


def test_an_empty_touchpoints_frame_leaves_every_conversion_unattributed() -> None:
    result = oq.attribute(_touchpoints().iloc[:0], _conversions(), models=["LINEAR"])
    assert result.links.height == 0 and result.unattributed.height == 2


def test_both_frames_invalid_count_both() -> None:
    with pytest.raises(oq.InputError) as info:
        oq.attribute(_touchpoints(anon_id=[None, "a", "b"]), _conversions(anon_id=["", "b"]), models=["LINEAR"])
    assert info.value.counts == {"touchpoints: null anon_id": 1, "conversions: empty anon_id": 1}
    assert "touchpoints" in str(info.value) and "conversions" in str(info.value)


def test_a_new_users_frames_in_dollars_and_local_dates_give_the_right_dollars() -> None:
    """A hand-made pandas data set: local New York times, US dates, revenue in dollars."""
    tp = pd.DataFrame(
        {
            "touchpoint_id": ["a1", "a2", "b1"],
            "anon_id": ["ann", "ann", "ben"],
            "occurred_at": ["01/02/2024 23:30", "01/09/2024 08:00", "01/03/2024 12:00"],
            "utm_source": ["google", "newsletter", None],
            "utm_medium": ["cpc", "email", None],
        }
    )
    cv = pd.DataFrame(
        {
            "conversion_id": ["o1", "o2"],
            "anon_id": ["ann", "ben"],
            "occurred_at": ["01/09/2024 09:15", "02/01/2024 09:00"],
            "revenue": [99.99, 20.00],
        }
    )
    options = {
        "timestamp_format": "%m/%d/%Y %H:%M",
        "timezone": "America/New_York",
        "value_column": "revenue",
        "value_unit": "currency",
    }
    result = oq.attribute(tp, cv, models=["LAST_TOUCH", "LINEAR"], **options)
    assert _dollars(result, "LAST_TOUCH") == {"email": 99.99, "direct": 20.0}
    assert _dollars(result, "LINEAR") == {"paid_search": 49.995, "email": 49.995, "direct": 20.0}
    assert result.links.filter(pl.col("touchpoint_id") == "a1")["touchpoint_id"].len() == 2
    assert np.isclose(result.credit["conversions"].sum(), 4.0)


def test_journeys_and_touchpoint_extraction_take_the_same_time_options() -> None:
    events = pd.DataFrame(
        {
            "event_id": ["e1", "e2"],
            "anon_id": ["ann", "ann"],
            "occurred_at": ["01/09/2024 08:00", "01/09/2024 09:15"],
            "type": ["PAGE_VIEW", "CONVERSION"],
            "utm_source": ["newsletter", None],
            "utm_medium": ["email", None],
        }
    )
    with pytest.raises(oq.InputError, match="unparseable occurred_at: 2"):
        oq.build_journeys(events)
    options = {"timestamp_format": "%m/%d/%Y %H:%M", "timezone": "America/New_York"}
    journeys = oq.build_journeys(events, **options).journeys
    assert journeys["converted_at"].to_list() == [datetime(2024, 1, 9, 14, 15, tzinfo=UTC)]
    touchpoints = oq.extract_touchpoints(events, **options).touchpoints
    assert touchpoints["occurred_at"].to_list() == [datetime(2024, 1, 9, 13, tzinfo=UTC)]


def test_a_count_column_is_not_taken_for_money() -> None:
    cv = _conversions(total_items=[3, 1]).drop(columns="value_micros")
    assert normalize_conversions(cv).frame["value_micros"].to_list() == [0, 0]
