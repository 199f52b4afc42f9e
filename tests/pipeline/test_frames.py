"""The data contract: coercion, invalid rows (raise or quarantine, counted by reason), duplicates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import optiq_engine as oq
from optiq_engine.frames import (
    _may_be_padded,
    _may_start_blank,
    matches_among,
    normalize_conversions,
    normalize_touchpoints,
)

UTC = UTC


def tps(**cols) -> pl.DataFrame:
    base = {
        "touchpoint_id": ["t1", "t2", "t3"],
        "anon_id": ["a", "a", "b"],
        "occurred_at": [datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3)],
        "channel": ["email", "direct", "display"],
    }
    base.update(cols)
    return pl.DataFrame(base)


def cvs(**cols) -> pl.DataFrame:
    base = {
        "conversion_id": ["c1", "c2"],
        "anon_id": ["a", "b"],
        "occurred_at": [datetime(2026, 1, 5, tzinfo=UTC)] * 2,
        "value_micros": [10_000_000, 5],
    }
    base.update(cols)
    return pl.DataFrame(base)


def test_timestamps_are_coerced_to_utc_microseconds() -> None:
    berlin = pl.Series([datetime(2026, 1, 1, 13, 0)] * 3).dt.replace_time_zone("Europe/Berlin").dt.cast_time_unit("ns")
    out = normalize_touchpoints(tps(occurred_at=berlin)).frame
    assert out.schema["occurred_at"] == pl.Datetime("us", "UTC")
    assert out["occurred_at"][0] == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    with pytest.warns(oq.errors.NaiveTimestampWarning, match="taken as UTC"):
        naive = normalize_touchpoints(tps(occurred_at=[datetime(2026, 1, 1, 12)] * 3)).frame
    assert naive["occurred_at"][0] == datetime(2026, 1, 1, 12, tzinfo=UTC)  # naive means UTC, with a warning
    text = normalize_touchpoints(tps(occurred_at=["2026-01-01T12:00:00.123456Z"] * 3)).frame
    assert text["occurred_at"][0] == datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    days = normalize_touchpoints(tps(occurred_at=[date(2026, 1, 1)] * 3), timezone="UTC").frame
    assert days["occurred_at"][0] == datetime(2026, 1, 1, tzinfo=UTC)


def test_epoch_numbers_are_refused_with_a_hint() -> None:
    with pytest.raises(oq.SchemaError, match="from_epoch"):
        normalize_touchpoints(tps(occurred_at=[1, 2, 3]))


def test_values_are_int64_micros() -> None:
    out = normalize_conversions(cvs(value_micros=[1, 2])).frame
    assert out.schema["value_micros"] == pl.Int64 and out["value_micros"].to_list() == [1, 2]
    assert normalize_conversions(cvs(value_micros=[None, 3])).frame["value_micros"].to_list() == [0, 3]
    assert normalize_conversions(cvs().drop("value_micros")).frame["value_micros"].to_list() == [0, 0]
    with pytest.raises(oq.SchemaError, match="integer micros"):
        normalize_conversions(cvs(value_micros=["1", "2"]))
    with pytest.raises(oq.SchemaError, match="integer micros"):  # whole floats too: micros or dollars?
        normalize_conversions(cvs(value_micros=[1.0, 2.0]))


def test_invalid_rows_raise_with_counts_by_reason_and_examples() -> None:
    frame = pl.DataFrame(
        {
            "conversion_id": ["c1", None, "c3", "c4", "c5", "c6"],
            "anon_id": ["a", "a", None, "b", "b", "b"],
            "occurred_at": ["2026-01-01", "2026-01-01", "2026-01-01", "not a date", "1900-01-01", "2026-01-02"],
            "value": [1.0, 2.0, 3.0, 4.0, 5.0, 1.0000005],
        }
    )
    with pytest.raises(oq.InputError) as info:
        normalize_conversions(frame, value_column="value", value_unit="currency")
    assert info.value.counts == {
        "null conversion_id": 1,
        "null anon_id": 1,
        "unparseable occurred_at": 1,
        "occurred_at out of range": 1,
        "more than 6 decimal places in value": 1,
    }
    assert "on_invalid='quarantine'" in str(info.value)


def test_quarantine_sets_rows_aside_and_keeps_the_rest() -> None:
    frame = cvs(value_micros=[-5, 7], occurred_at=[None, datetime(2026, 1, 5, tzinfo=UTC)])
    norm = normalize_conversions(frame, on_invalid="quarantine")
    assert norm.frame["conversion_id"].to_list() == ["c2"]
    assert norm.quarantined["reason"].to_list() == ["null occurred_at"]
    result = oq.attribute(tps(), frame, on_invalid="quarantine")
    assert result.quarantined["conversions"].height == 1 and result.n_conversions == 1
    assert result.links.height + result.unattributed.height > 0


def test_negative_value_is_invalid() -> None:
    with pytest.raises(oq.InputError, match="negative value_micros: 1"):
        oq.attribute(tps(), cvs(value_micros=[-1, 2]))


def test_duplicate_ids_are_an_error_even_in_quarantine_mode() -> None:
    with pytest.raises(oq.InputError, match="touchpoint_id") as info:
        oq.attribute(tps(touchpoint_id=["t1", "t1", "t3"]), cvs(), on_invalid="quarantine")
    assert info.value.counts == {"duplicate touchpoint_id": 2}


def test_missing_column_suggests_the_closest() -> None:
    with pytest.raises(oq.SchemaError, match=r"'anon_id' \(did you mean 'anonId'\?\)"):
        oq.attribute(tps().rename({"anon_id": "anonId"}), cvs())


def test_accepts_arrow_pandas_and_lazy_frames() -> None:
    expected = oq.attribute(tps(), cvs()).links
    for tp, cv in (
        (tps().to_arrow(), cvs().to_arrow()),
        (tps().to_pandas(), cvs().to_pandas()),
        (tps().lazy(), cvs().lazy()),
        (pa.RecordBatch.from_pandas(tps().to_pandas()), cvs().to_pandas()),
    ):
        assert oq.attribute(tp, cv).links.equals(expected)
    assert isinstance(tps().to_pandas(), pd.DataFrame)


def test_not_a_frame_is_a_schema_error() -> None:
    with pytest.raises(oq.SchemaError, match="must be a polars DataFrame"):
        oq.attribute([1, 2], cvs())


def test_integer_ids_are_strings() -> None:
    out = normalize_touchpoints(tps(touchpoint_id=[1, 2, 3], anon_id=[7, 7, 8])).frame
    assert out.schema["touchpoint_id"] == pl.String and out["anon_id"].to_list() == ["7", "7", "8"]


def test_empty_inputs_give_empty_results() -> None:
    result = oq.attribute(tps().clear(), cvs().clear())
    assert result.links.height == 0 and result.unattributed.height == 0
    assert result.links.columns == list(oq.frames.LINKS_SCHEMA)
    only_conversions = oq.attribute(tps().clear(), cvs())
    assert only_conversions.unattributed["reason"].to_list() == ["no_touchpoints"] * 2


def test_config_errors_name_the_field() -> None:
    with pytest.raises(oq.ConfigError, match="lookback must be positive"):
        oq.AttributionConfig(lookback=timedelta(0))
    with pytest.raises(oq.ConfigError, match="on_invalid"):
        oq.attribute(tps(), cvs(), on_invalid="ignore")
    with pytest.raises(oq.ConfigError, match="unknown option.*lookbak"):
        oq.attribute(tps(), cvs(), lookbak=timedelta(days=1))
    with pytest.raises(oq.ConfigError, match="first \\+ last"):
        oq.models.PositionBased(first=0.7, last=0.6)
    with pytest.raises(oq.ConfigError, match="half_life"):
        oq.models.TimeDecay(half_life=timedelta(0))
    with pytest.raises(ValueError):  # ConfigError is also a ValueError
        oq.AttributionConfig(position_first=2.0)


def test_model_names_and_objects() -> None:
    with pytest.raises(oq.ModelError, match="valid choices: FIRST_TOUCH"):
        oq.attribute(tps(), cvs(), models=["FIRST_TOUCHES"])
    with pytest.raises(oq.ModelError, match="more than once"):
        oq.attribute(tps(), cvs(), models=["LINEAR", oq.models.Linear()])
    result = oq.attribute(tps(), cvs(), models="linear")
    assert result.model_names == ("LINEAR",)
    presets = {m.name: (m.first, m.last) for m in [oq.models.PositionBased.j_curve()]}
    assert presets == {"POSITION_BASED": (0.2, 0.6)}
    assert oq.models.PositionBased.inverse_j().first == 0.6 and oq.models.PositionBased.u_shaped().last == 0.4


def test_a_run_option_a_model_object_does_not_take_is_refused() -> None:
    """Model objects are used as given: an option of the run that one of them would take by name but does not
    have (here no intervals) is refused in one line, not dropped; equal values and defaults pass."""
    with pytest.raises(
        oq.ConfigError, match=r"bootstrap=5 does not reach the model object MARKOV.*Markov\(bootstrap=5\)"
    ):
        oq.attribute(tps(), cvs(), models=[oq.models.Markov()], bootstrap=5)
    with pytest.raises(oq.ConfigError, match="markov_order=2 does not reach"):
        oq.attribute(tps(), cvs(), models=["LINEAR", oq.models.Markov()], markov_order=2)
    fit = oq.attribute(tps(), cvs(), models=[oq.models.Markov(bootstrap=5)], bootstrap=5).fitted["MARKOV"]
    assert "ci_low" in fit.channel_credit.columns
    assert oq.attribute(tps(), cvs(), models=[oq.models.Markov(order=2)]).fitted["MARKOV"].model.order == 2


def test_every_model_has_a_value_in_the_database_enum() -> None:
    from optiq_engine.io.schema import ATTRIBUTION_MODELS

    assert set(oq.available_models()) <= set(ATTRIBUTION_MODELS)


# The blank and padded-id checks run their regex only on rows a cheap prefilter keeps; the prefilter must
# keep every row the regex matches, or a blank id would pass validation. Strings drawn from the characters
# that matter: every Unicode space, the ASCII controls around "!", non-ASCII letters, plain letters.
_EDGE_CHARS = st.sampled_from(
    [" ", "\t", "\n", "\x0b", "\x0c", "\r", "\x00", "\x1f", "!", "a", "Z", "~", "\x7f", "\x85", "\xa0", "é"]
    + ["\u1680", "\u2000", "\u200a", "\u200b", "\u2028", "\u202f", "\u205f", "\u3000", "\ufeff", "日"]
)
_IDS = st.lists(st.one_of(st.none(), st.text(_EDGE_CHARS, max_size=4), st.text(max_size=3)), max_size=30)


@settings(max_examples=300, deadline=None)
@given(_IDS)
def test_prefiltered_id_checks_equal_the_plain_regexes(values: list[str | None]) -> None:
    ids = pl.Series("id", values, dtype=pl.String)
    frame = ids.to_frame()
    for maybe, pattern in ((_may_start_blank, r"^\s*$"), (_may_be_padded, r"^\s|\s$|[^\x00-\x7F]")):
        keep = frame.select(maybe(pl.col("id"))).to_series()
        plain = ids.str.contains(pattern).fill_null(False)
        assert not (plain & ~keep).any(), "the prefilter dropped a row the regex matches"
        assert matches_among(ids, keep, pattern).to_list() == plain.to_list()


def test_blank_and_padded_ids_are_still_found_among_millions_of_plain_ones() -> None:
    plain = [f"u_{i:07d}" for i in range(200_000)]
    ids = plain[:50_000] + ["\u3000", " ", ""] + plain[50_000:]
    frame = pl.DataFrame({"touchpoint_id": [f"t{i}" for i in range(len(ids))], "anon_id": ids})
    frame = frame.with_columns(occurred_at=pl.lit(datetime(2026, 1, 1, tzinfo=UTC)))
    bad = normalize_touchpoints(frame, on_invalid="quarantine").quarantined
    assert bad.get_column("anon_id").to_list() == ["\u3000", " ", ""]
    assert set(bad.get_column("reason")) == {"empty anon_id"}
