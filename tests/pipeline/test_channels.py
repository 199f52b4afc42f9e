"""Channel derivation: click ids first, then the UTM rules table, direct when nothing is tagged."""

from __future__ import annotations

import polars as pl
import pytest

import optiq_engine as oq
from optiq_engine.simulate.synthetic import CHANNEL_UTM


def derive(rows: list[dict], rules: oq.ChannelRules | None = None) -> list[str]:
    schema = {c: pl.String for c in ("gclid", "fbclid", "ttclid", "utm_source", "utm_medium")}
    frame = pl.DataFrame(rows, schema=schema)
    return oq.derive_channels(frame, rules).to_list()


@pytest.mark.parametrize(
    ("row", "channel"),
    [
        ({"gclid": "x", "utm_source": "newsletter", "utm_medium": "email"}, "google_ads"),  # click id wins
        ({"fbclid": "x"}, "meta_ads"),
        ({"ttclid": "x"}, "tiktok_ads"),
        ({"utm_source": "Google", "utm_medium": "CPC"}, "paid_search"),  # case-insensitive
        ({"utm_source": " bing ", "utm_medium": "ppc"}, "paid_search"),  # trimmed
        ({"utm_source": "facebook", "utm_medium": "paid"}, "paid_social"),
        ({"utm_source": "x", "utm_medium": "display"}, "display"),
        ({"utm_source": "youtube", "utm_medium": "referral"}, "video"),
        ({"utm_source": "newsletter", "utm_medium": "email"}, "email"),
        ({"utm_source": "awin", "utm_medium": "affiliate"}, "affiliate"),
        ({"utm_source": "google", "utm_medium": "organic"}, "organic_search"),
        ({"utm_source": "instagram", "utm_medium": "social"}, "organic_social"),
        ({"utm_source": "blog.example", "utm_medium": "referral"}, "referral"),
        ({"utm_source": "(direct)", "utm_medium": "(none)"}, "direct"),
        ({}, "direct"),
        ({"utm_source": "", "utm_medium": ""}, "direct"),
        ({"utm_source": "mystery"}, "unassigned"),
    ],
)
def test_default_rules(row: dict, channel: str) -> None:
    assert derive([row]) == [channel]


def test_synthetic_utm_tags_round_trip_to_their_channel() -> None:
    rows = [{"utm_source": s, "utm_medium": m, **({c: "id"} if c else {})} for s, m, c in CHANNEL_UTM.values()]
    assert derive(rows) == list(CHANNEL_UTM)


def test_rules_are_a_replaceable_table() -> None:
    table = oq.DEFAULT_CHANNEL_RULES.to_frame()
    assert table.columns == ["channel", "click_id", "source", "medium"] and table.height > 10
    custom = pl.concat([pl.DataFrame({"channel": ["podcast"], "source": ["spotify|podcast.*"]}), table], how="diagonal")
    rules = oq.ChannelRules.from_frame(custom)
    assert derive([{"utm_source": "spotify", "utm_medium": "cpc"}], rules) == ["podcast"]
    assert derive([{"utm_source": "spotify", "utm_medium": "cpc"}]) == ["paid_other"]


def test_an_empty_rules_table_leaves_only_the_fallbacks() -> None:
    """No rule: tagged touches are unassigned and untagged ones direct, as Postgres' channel_sql does (it
    raised IndexError)."""
    empty = oq.ChannelRules.from_frame(oq.DEFAULT_CHANNEL_RULES.to_frame().clear())
    rows = [{"utm_source": "google", "utm_medium": "cpc"}, {"utm_source": None, "utm_medium": None}]
    assert derive(rows, empty) == ["unassigned", "direct"]


def test_bad_rules_are_config_errors() -> None:
    with pytest.raises(oq.ConfigError, match="bad source regex"):
        oq.ChannelRule("x", source="(")
    with pytest.raises(oq.ConfigError, match="no condition"):
        oq.ChannelRule("x")
    with pytest.raises(oq.ConfigError, match="click_id"):
        oq.ChannelRule("x", click_id="msclkid")


def test_attribute_derives_missing_channels_with_the_configured_rules() -> None:
    data = oq.synthetic.generate(n_users=300, seed=5)
    given = oq.attribute(data.touchpoints, data.conversions, models=["LINEAR"]).links
    derived = oq.attribute(data.touchpoints.drop("channel"), data.conversions, models=["LINEAR"]).links
    key = ["conversion_id", "position"]
    assert given.sort(key)["channel"].cast(pl.String).equals(derived.sort(key)["channel"].cast(pl.String))
    everything_podcast = oq.ChannelRules((oq.ChannelRule("podcast", source=".*"),))
    custom = oq.attribute(
        data.touchpoints.drop("channel"), data.conversions, models=["LINEAR"], channel_rules=everything_podcast
    )
    assert set(custom.links["channel"].cast(pl.String).unique()) <= {"podcast", "direct"}


def test_null_channels_are_derived() -> None:
    data = oq.synthetic.generate(n_users=300, seed=5)
    tp = data.touchpoints.with_columns(
        pl.when(pl.int_range(pl.len()) % 2 == 0)
        .then(None)
        .otherwise(pl.col("channel").cast(pl.String))
        .alias("channel")
    )
    links = oq.attribute(tp, data.conversions, models=["LINEAR"]).links
    expected = oq.attribute(data.touchpoints, data.conversions, models=["LINEAR"]).links
    key = ["conversion_id", "position"]
    assert links.sort(key)["channel"].cast(pl.String).equals(expected.sort(key)["channel"].cast(pl.String))


def test_direct_lookalikes_are_warned_about() -> None:
    """A GA export's "Direct" is not the direct channel "direct": LAST_NON_DIRECT credited it silently."""
    from datetime import UTC, datetime, timedelta

    import polars as pl

    import optiq_engine as oq
    from optiq_engine.channels import direct_lookalikes
    from optiq_engine.errors import OptiqWarning

    assert direct_lookalikes(["Direct", "(direct)", " direct ", "direct", "email", "directory"], ("direct",)) == [
        " direct ",
        "(direct)",
        "Direct",
    ]
    t = datetime(2026, 3, 1, tzinfo=UTC)
    tp = pl.DataFrame(
        {
            "touchpoint_id": ["a", "b"],
            "anon_id": ["u", "u"],
            "channel": ["email", "Direct"],
            "occurred_at": [t - timedelta(days=2), t - timedelta(days=1)],
        }
    )
    cv = pl.DataFrame({"conversion_id": ["c"], "anon_id": ["u"], "occurred_at": [t], "value_micros": [1]})
    with pytest.warns(OptiqWarning, match=r"\['Direct'\] look like the direct channels"):
        oq.attribute(tp, cv, models=["LAST_NON_DIRECT"])
    fixed = oq.attribute(tp, cv, models=["LAST_NON_DIRECT"], direct_channels=("direct", "Direct"))
    assert fixed.credit.filter(pl.col("conversions") > 0).get_column("channel").cast(str).to_list() == ["email"]


def _one_journey_each(labels: list[str | None]) -> tuple[pl.DataFrame, pl.DataFrame]:
    from datetime import UTC, datetime, timedelta

    t = datetime(2026, 3, 1, tzinfo=UTC)
    n = len(labels)
    tp = pl.DataFrame(
        {
            "touchpoint_id": [f"t{i}" for i in range(n)],
            "anon_id": [f"u{i}" for i in range(n)],
            "channel": labels,
            "occurred_at": [t - timedelta(days=1)] * n,
        },
        schema_overrides={"channel": pl.String},
    )
    cv = pl.DataFrame(
        {
            "conversion_id": [f"c{i}" for i in range(n)],
            "anon_id": [f"u{i}" for i in range(n)],
            "occurred_at": [t] * n,
            "value_micros": [1] * n,
        }
    )
    return tp, cv


@pytest.mark.parametrize("dtype", [pl.String, pl.Categorical, "enum"])
def test_given_channel_labels_are_stripped_and_blank_ones_derived(dtype) -> None:
    """ " google_ads" from a spreadsheet was a channel of its own beside "google_ads", each with part of the
    credit; a blank label was a channel named "". Now one channel, and a blank label is derived like a null."""
    tp, cv = _one_journey_each(["google_ads", " google_ads", "google_ads\t", "\u00a0", "", None, "email"])
    if dtype == "enum":
        tp = tp.with_columns(pl.col("channel").cast(pl.Enum(tp.get_column("channel").drop_nulls().unique().sort())))
    else:
        tp = tp.with_columns(pl.col("channel").cast(dtype))
    credit = oq.attribute(tp, cv, models=["LINEAR"]).credit
    got = dict(zip(credit.get_column("channel").cast(str), credit.get_column("conversions"), strict=True))
    assert got == {"google_ads": 3.0, "direct": 3.0, "email": 1.0}


def test_channels_differing_only_by_case_are_warned_about() -> None:
    from optiq_engine.channels import confusable_channels
    from optiq_engine.errors import OptiqWarning

    assert confusable_channels(["email", "Email", "(email)", "google_ads", "Direct", "direct"]) == [
        ["(email)", "Email", "email"],
        ["Direct", "direct"],
    ]
    tp, cv = _one_journey_each(["email", "Email", "google_ads"])
    with pytest.warns(OptiqWarning, match=r"\[\['Email', 'email'\]\] differ only by case"):
        oq.attribute(tp, cv, models=["LINEAR"])


def test_channels_spelled_like_missing_values_or_with_invisible_characters_are_warned_about() -> None:
    """pandas' .astype(str) turns a missing channel into "nan": it was credited as a channel, silently; and
    "email\u200b" (a zero-width space from a copy-paste) printed like "email" but was another channel."""
    from optiq_engine.channels import missing_lookalikes
    from optiq_engine.errors import OptiqWarning

    assert missing_lookalikes(["nan", "None", "<NA>", "email", "nancy"]) == ["<NA>", "None", "nan"]
    tp, cv = _one_journey_each(["email", "nan", "google_ads"])
    with pytest.warns(OptiqWarning, match=r"\['nan'\] are spelled like missing values"):
        oq.attribute(tp, cv, models=["LINEAR"])
    tp, cv = _one_journey_each(["email", "email\u200b", "google_ads"])
    with pytest.warns(OptiqWarning, match="differ only by case"):
        oq.attribute(tp, cv, models=["LINEAR"])


def test_ids_differing_by_an_invisible_character_are_warned_about() -> None:
    from optiq_engine.errors import ConfusableIdWarning
    from optiq_engine.frames import warn_confusable_ids

    with pytest.warns(ConfusableIdWarning, match="2 distinct anon_id"):
        assert warn_confusable_ids(pl.Series(["u1", "\ufeffu1", "u2"])) == 2
