"""What :func:`optiq_engine.attribute` returns."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from .config import AttributionConfig
    from .identity import IdentityStitch
    from .models import AttributionModel, FittedModel

__all__ = ["AttributionResult", "LookbackCoverage", "channel_shares", "combine_credit", "lookback_coverage"]

log = logging.getLogger(__name__)

#: The columns of ``result.links``, in their order (docs/contract.md §1): one row per model x (conversion, touchpoint).
LINK_COLUMNS = (
    "conversion_id",
    "touchpoint_id",
    "model",
    "weight",
    "position",
    "touchpoint_count",
    "credited_value_micros",
    "channel",
)

#: The column that names the conversion type in the frames of ``attribute(..., by="name")`` (docs/attribution.md,
#: "Conversion types"): null for the conversions without a name.
TYPE_COLUMN = "conversion_name"


@dataclass(frozen=True, eq=False)
class AttributionResult:
    """Links, credit and the conversions left unattributed, for every model of one run.

    Made by :func:`optiq_engine.attribute`.

    Parameters
    ----------
    links, credit, unattributed
        The frames described under Attributes.
    models
        The run's model objects, in the order asked (:attr:`model_names`).
    config
        The run's resolved :class:`~optiq_engine.AttributionConfig`.
    fitted, n_conversions, quarantined, timings, lookback_coverage, identity, types
        Described under Attributes; default empty, 0 or None.

    Attributes
    ----------
    links
        One row per (conversion, eligible touchpoint, model): ``conversion_id``, ``touchpoint_id``,
        ``model``, ``weight``, ``position``, ``touchpoint_count``, ``credited_value_micros``, ``channel``.
        Rows are grouped by model (in the order asked), a conversion's links contiguous in position order.
    credit
        Per model x channel: ``conversions`` (sum of weights) and ``value_micros`` (exact sum of
        credited micros).
    unattributed
        Conversions without links, with a ``reason`` and a ``model``: null when no model can credit them
        (no eligible touchpoint), a data-driven model's name for a conversion that model credits to no
        channel (a baseline conversion, docs/data_driven.md §5; the other models may credit it).
    quarantined
        Rows set aside with ``on_invalid="quarantine"``: ``{"touchpoints": ..., "conversions": ...}``,
        each with a ``reason`` column.
    fitted
        The fitted data-driven models by name (``result.fitted["MARKOV"].channel_credit``).
    n_conversions
        Valid conversions in the run (attributed or not).
    timings
        Seconds spent per stage (``validate``, ``encode``, ``sort``, ``match``, ``weights``, ``frames``).
    lookback_coverage
        How many conversions have touchpoints older than the lookback since their previous conversion
        (:class:`LookbackCoverage`; None on Spark).
    identity
        With ``identity="stitched"``: how many anon ids were merged into how many persons
        (:class:`optiq_engine.identity.IdentityStitch`, docs/contract.md §1.5); None otherwise.
    types
        With ``by="name"``: each conversion type's own result by name (None: the conversions without a
        name), with its ``fitted``, ``lookback_coverage`` and ``config``; ``links``, ``credit`` and
        ``unattributed`` then start with a ``conversion_name`` column and ``shares()`` is per (type, model)
        (docs/attribution.md "Conversion types"). Empty otherwise.
    """

    links: pl.DataFrame
    credit: pl.DataFrame
    unattributed: pl.DataFrame
    models: tuple[AttributionModel, ...]
    config: AttributionConfig
    fitted: dict[str, FittedModel] = field(default_factory=dict)
    n_conversions: int = 0
    quarantined: dict[str, pl.DataFrame] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    lookback_coverage: LookbackCoverage | None = None
    identity: IdentityStitch | None = None
    types: dict[str | None, AttributionResult] = field(default_factory=dict)

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    def shares(self) -> pl.DataFrame:
        """Channel shares of every model (``model``, ``channel``, ``share``; strings): ``credit``'s
        conversions normalised to sum 1 per model (:func:`channel_shares`).

        For every model, heuristic or data-driven, these are the shares of the numbers in ``credit`` and
        in the links (docs/data_driven.md §5). A data-driven fit's own statistic (``removal_effect``,
        ``shapley_value``, ``incremental_conversions``) is another quantity; its ``share`` is what the
        links were balanced to, equal to these up to ``fitted[name].credit_gap``.

        With ``by="name"`` the shares are per conversion type and model, ``conversion_name`` first.
        """
        return channel_shares(self.credit, models=self.model_names)

    def links_for(self, model: str) -> pl.DataFrame:
        """The links of one model.

        Parameters
        ----------
        model
            A model name of the run, in any case (``"linear"``).

        Returns
        -------
        polars.DataFrame
            Its rows of ``links`` (empty for a name the run does not have).
        """
        return self.links.filter(pl.col("model") == model.upper())

    def without_links(self) -> AttributionResult:
        """The same result with an empty links frame (to keep summaries of many batches in memory); each
        conversion type's result in ``types`` too."""
        return replace(self, links=self.links.clear(), types={k: r.without_links() for k, r in self.types.items()})

    def __repr__(self) -> str:
        return (
            f"AttributionResult(models={list(self.model_names)}, links={self.links.height:,}, "
            f"conversions={self.n_conversions:,}, unattributed={self.unattributed.height:,}"
            + (f", conversion types={list(self.types)})" if self.types else ")")
        )

    # --- notebook display (optiq_engine._html) ---
    def _repr_html_(self) -> str:
        from ._html import result_html

        if not self.types:
            return result_html(self)
        return "".join(  # one summary per conversion type
            f"<div><strong>{TYPE_COLUMN} = {name if name is not None else '(no name)'}</strong>{result_html(r)}</div>"
            for name, r in self.types.items()
        )


@dataclass(frozen=True)
class LookbackCoverage:
    """How much of the conversions' journeys the lookback window leaves out (docs/contract.md §2.1).

    A conversion's *journey* here is every touchpoint of its group since the group's previous conversion
    (with ``reset_after_conversion``; else since the group's first touchpoint) up to the conversion. The
    models credit only the part inside the lookback; a data-driven fit sees only that part too, so an
    earlier touch's effect is read into the channels seen late (docs/data_driven.md §1).

    Made by :func:`lookback_coverage`.

    Parameters
    ----------
    lookback, conversions, cut, touchpoints_left_out, lookback_95
        The fields described under Attributes.

    Attributes
    ----------
    lookback
        The run's lookback.
    conversions
        Conversions with at least one touchpoint in their journey.
    cut
        Of those, the conversions with touchpoints older than the lookback.
    touchpoints_left_out
        Those older touchpoints, summed over the conversions.
    lookback_95
        The shortest lookback that holds the whole journey of at least 95 % of ``conversions`` (the
        smallest journey span with 95 % of the spans at or below it, plus 1 µs; None if none).
    """

    lookback: timedelta
    conversions: int
    cut: int
    touchpoints_left_out: int
    lookback_95: timedelta | None

    @property
    def cut_fraction(self) -> float:
        """``cut / conversions`` (0 when there are none)."""
        return self.cut / self.conversions if self.conversions else 0.0

    def message(self, window_fits: Sequence[str] = ()) -> str:
        """One line for a log or a report; ``window_fits``: the models fitted on the windows, named in it."""
        hold = f"; a lookback of {_days(self.lookback_95)} would hold 95 % of them whole" if self.lookback_95 else ""
        fitted = (
            f", and {', '.join(window_fits)} {'is' if len(window_fits) == 1 else 'are'} fitted on it"
            if window_fits
            else ""
        )
        return (
            f"the lookback of {_days(self.lookback)} cuts the journeys of {self.cut:,} of {self.conversions:,} "
            f"conversions ({self.cut_fraction:.0%}: {self.touchpoints_left_out:,} "
            f"touchpoint{'' if self.touchpoints_left_out == 1 else 's'} of their journeys "
            f"{'is' if self.touchpoints_left_out == 1 else 'are'} older){hold}. "
            f"Every model credits the window only{fitted} (docs/contract.md §2.1)"
        )


def _days(value: timedelta) -> str:
    """``value`` in whole days, rounded up (``30 days``), ``1 day``, or as is below a day."""
    days = -(-value // timedelta(days=1))
    return f"{days} days" if days >= 2 else "1 day" if value == timedelta(days=1) else str(value)


def lookback_coverage(
    start: np.ndarray, lo: np.ndarray, hi: np.ndarray, tp_ts: np.ndarray, cv_ts: np.ndarray, lookback: timedelta
) -> LookbackCoverage:
    """Summarise the conversions' windows against their whole journeys (``start``:
    :func:`optiq_engine.kernels.windows.match_windows`; ``lo``, ``hi``: the windows; sorted times in µs).

    Parameters
    ----------
    start
        Per conversion, the sorted-touchpoint index where its journey starts.
    lo, hi
        Per conversion, its window's range of sorted touchpoints (``[lo, hi)``).
    tp_ts, cv_ts
        Sorted touchpoints' and conversions' times, in UTC microseconds (int64).
    lookback
        The run's lookback (reported as is).

    Returns
    -------
    LookbackCoverage
    """
    has_journey = hi > start
    cut = lo > start
    spans = cv_ts[has_journey] - tp_ts[start[has_journey]]
    # the smallest observed span with at least 95 % of the spans at or below it: that lookback holds them whole
    held = -(-95 * spans.shape[0] // 100)  # ceil(0.95 n), in integers
    q95 = timedelta(microseconds=int(np.partition(spans, held - 1)[held - 1]) + 1) if spans.shape[0] else None
    return LookbackCoverage(lookback, int(has_journey.sum()), int(cut.sum()), int((lo - start)[cut].sum()), q95)


def channel_shares(credit: pl.DataFrame, *, models: Sequence[str] | None = None) -> pl.DataFrame:
    """Every model's credited conversions normalised to sum 1 (0 for a model that credited nothing).

    Parameters
    ----------
    credit
        A credit frame (``model``, ``channel``, ``conversions``): ``result.credit``,
        :func:`combine_credit`.
    models
        Model order of the output (default: the order of ``credit``).

    Returns
    -------
    polars.DataFrame
        ``model``, ``channel``, ``share`` (strings), sorted by model then channel; with a ``conversion_name``
        column (``by="name"``), normalised per (type, model), that column first and sorted by it first (the
        type without a name last).
    """
    by = [TYPE_COLUMN] if TYPE_COLUMN in credit.columns else []
    credit = credit.with_columns(pl.col("model", "channel", *by).cast(pl.String))
    order = list(models) if models is not None else list(dict.fromkeys(credit.get_column("model").to_list()))
    rank = {name: i for i, name in enumerate(order)}
    share = pl.col("conversions") / pl.col("conversions").sum().over(*by, "model")
    model_rank = pl.col("model").replace_strict(rank, default=len(rank), return_dtype=pl.Int64)
    return (
        credit.select(*by, "model", "channel", share=share)
        .with_columns(pl.col("share").fill_nan(0.0))
        .sort(*by, model_rank, "model", "channel", nulls_last=bool(by))
    )


def combine_credit(credits: list[pl.DataFrame]) -> pl.DataFrame:
    """Add up credit frames of results over disjoint sets of users (batches, partitions).

    ``value_micros`` is summed exactly: a cell whose sum exceeds int64, or that is null in any part (it
    exceeded int64 there), is null, as in :func:`optiq_engine.attribute`; never wrapped or partial. Frames
    with a ``conversion_name`` column (``by="name"``) add up per type too.

    Parameters
    ----------
    credits
        Credit frames (``model``, ``channel``, ``conversions``, ``value_micros``), all with or all without
        ``conversion_name``.

    Returns
    -------
    polars.DataFrame
        One row per (type,) model and channel: ``conversions`` summed, ``value_micros`` (Int64, null on
        overflow); ``model`` an Enum in order of first appearance, rows sorted by it then ``channel``. No
        frame: an empty frame of those four columns.
    """
    if not credits:
        return pl.DataFrame(
            schema={"model": pl.String, "channel": pl.String, "conversions": pl.Float64, "value_micros": pl.Int64}
        )
    by = [TYPE_COLUMN] if TYPE_COLUMN in credits[0].columns else []
    frames = [c.with_columns(pl.col("model", "channel", *by).cast(pl.String)) for c in credits]
    order = list(dict.fromkeys(m for f in frames for m in f.get_column("model").to_list()))
    value = pl.col("value_micros")
    combined = (
        pl.concat(frames, how="vertical")
        .group_by(*by, "model", "channel", maintain_order=True)
        .agg(
            pl.col("conversions").sum(),
            pl.when(value.null_count() == 0).then(value.cast(pl.Int128).sum()).alias("value_micros"),
        )
        .with_columns(pl.col("model").cast(pl.Enum(order)))
    )
    fits = pl.col("value_micros").is_between(-(2**63), 2**63 - 1)
    overflow = combined.filter(pl.col("value_micros").is_not_null() & ~fits).height
    if overflow:
        log.warning("credited value of %d (model, channel) cells exceeds 2**63 - 1 micros: left null", overflow)
    return combined.with_columns(pl.when(fits).then(pl.col("value_micros")).cast(pl.Int64)).sort(
        *by, "model", "channel", nulls_last=bool(by)
    )
