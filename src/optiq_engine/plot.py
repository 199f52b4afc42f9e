"""Plots of attribution results (matplotlib; ``pip install "optiq-engine[plot]"``).

Every function takes the data first, everything else keyword-only, an optional ``ax`` to draw on (a new
figure otherwise) and returns the Axes it drew on. Money is drawn in currency units (micros / 10^6), shares
as fractions of 1.

>>> import optiq_engine as oq
>>> from optiq_engine import plot
>>> result = oq.attribute(tp, cv, models=["LAST_TOUCH", "LINEAR", "MARKOV"])  # doctest: +SKIP
>>> plot.plot_credit(result, value=True)                                      # doctest: +SKIP
>>> plot.plot_transition_matrix(result.fitted["MARKOV"])                      # doctest: +SKIP

``import optiq_engine`` does not import this module (nor matplotlib); ``import optiq_engine.plot`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import polars as pl

from .errors import ConfigError, InputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .models import FittedModel
    from .result import AttributionResult

__all__ = [
    "plot_credit",
    "plot_credit_intervals",
    "plot_transition_matrix",
    "plot_paths",
    "plot_accuracy",
    "compare_with_truth",
]

MICROS = 1_000_000


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - the plot extra installs it
        raise ImportError('optiq_engine.plot needs matplotlib: pip install "optiq-engine[plot]"') from exc
    return plt


def _axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=size, layout="constrained")
    return ax


def _frame(obj: Any, what: str) -> pl.DataFrame:
    """A polars frame from a polars or pandas frame (or anything ``pl.DataFrame`` takes)."""
    if isinstance(obj, pl.DataFrame):
        return obj
    try:
        return pl.from_pandas(obj) if type(obj).__module__.startswith("pandas") else pl.DataFrame(obj)
    except Exception as exc:
        raise InputError(f"{what}: expected a polars or pandas frame, got {type(obj).__name__}") from exc


def _require(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{what}: missing column(s) {missing}; it has {frame.columns}")


def _thousands(ax: Axes, axis: str = "y") -> None:
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


# --- credit ----------------------------------------------------------------------------------------------
def _one_type(frame: pl.DataFrame, what: str) -> None:
    """Refuse the credit of several conversion types (``by="name"``, docs/attribution.md "Conversion types"):
    its (model, channel) cells would mix them."""
    if "conversion_name" in frame.columns:
        raise ConfigError(
            f"{what}: the result has credit per conversion type (by='name'); pass one type's, e.g. "
            "result.types['purchase'], or filter the credit frame on conversion_name"
        )


def plot_credit(
    result: AttributionResult | Any, *, models: Sequence[str] | None = None, value: bool = False, ax: Axes | None = None
) -> Axes:
    """Grouped bars of credit per channel, one bar per model.

    Parameters
    ----------
    result
        An :class:`~optiq_engine.AttributionResult`, or a credit frame with ``model``, ``channel``,
        ``conversions`` and ``value_micros`` (``result.credit``, :func:`optiq_engine.combine_credit`).
    models
        The models to draw, in this order (default: every model of the result).
    value
        Draw credited value in currency units (``value_micros / 10^6``) instead of attributed conversions.
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes
        With one :class:`~matplotlib.container.BarContainer` per model, each holding one bar per channel
        (``channels x models`` bars; a channel a model did not credit has a bar of height 0).
    """
    credit = _frame(getattr(result, "credit", result), "plot_credit")
    _require(credit, ["model", "channel", "conversions", "value_micros"], "plot_credit")
    _one_type(credit, "plot_credit")
    credit = credit.with_columns(pl.col("model", "channel").cast(pl.String))
    present = list(dict.fromkeys(credit.get_column("model").to_list()))
    chosen = [m.upper() for m in models] if models is not None else present
    unknown = [m for m in chosen if m not in present]
    if unknown:
        raise ConfigError(f"plot_credit: no credit for model(s) {unknown}; the result has {present}")
    channels = list(dict.fromkeys(credit.get_column("channel").to_list()))
    column = "value_micros" if value else "conversions"
    scale = MICROS if value else 1
    heights = {(m, c): v / scale for m, c, v in credit.select("model", "channel", column).iter_rows()}
    ax = _axes(ax, (min(12.0, max(7.0, 0.3 * len(channels) * max(1, len(chosen)) ** 0.5 + 3)), 4.5))
    x = np.arange(len(channels))
    width = 0.8 / max(1, len(chosen))
    for i, model in enumerate(chosen):
        ax.bar(
            x + (i - (len(chosen) - 1) / 2) * width,
            [heights.get((model, c), 0.0) for c in channels],
            width,
            label=model,
        )
    ax.set_xticks(x, channels, rotation=35, ha="right")
    ax.set_xlabel("channel")
    ax.set_ylabel("credited value (currency units)" if value else "attributed conversions")
    ax.set_title("Credited value by channel and model" if value else "Attributed conversions by channel and model")
    _thousands(ax)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if len(chosen) > 1:
        ax.legend(title="model", fontsize="small", ncols=2 if len(chosen) > 4 else 1)
    return ax


def _fits(fitted: Any) -> list[tuple[str, Any]]:
    """(label, FittedModel) pairs from one fit, a sequence of fits or a mapping name -> fit."""
    if isinstance(fitted, Mapping):
        return [(str(k), v) for k, v in fitted.items()]
    if hasattr(fitted, "channel_credit"):
        return [(fitted.name, fitted)]
    if isinstance(fitted, Sequence) and not isinstance(fitted, str):
        return [(f.name, f) for f in fitted]
    raise InputError(f"expected a FittedModel, a list of them or result.fitted; got {type(fitted).__name__}")


def plot_credit_intervals(
    fitted: FittedModel | Sequence[FittedModel] | Mapping[str, FittedModel], *, ax: Axes | None = None
) -> Axes:
    """Channel shares of data-driven fits, with their bootstrap confidence intervals as whiskers.

    The bars are each fit's ``share``, the quantity the intervals are about; the links (and
    :func:`plot_credit`, ``result.shares()``) credit these shares up to ``fit.credit_gap``
    (docs/data_driven.md §5).

    Parameters
    ----------
    fitted
        A fitted data-driven model (``result.fitted["MARKOV"]``, :func:`optiq_engine.fit_paths`), a list of
        them, or a mapping name -> fit (``result.fitted``). Fits made with ``bootstrap=B`` get whiskers from
        ``ci_low`` to ``ci_high``; fits without a bootstrap get bars only.
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes
        Horizontal bars (one per channel and fit) and, for bootstrapped fits, one error-bar container each.
    """
    fits = _fits(fitted)
    if not fits:
        raise InputError("plot_credit_intervals: no fitted model given")
    channels = list(dict.fromkeys(c for _, f in fits for c in f.channel_credit.get_column("channel").cast(pl.String)))
    ax = _axes(ax, (7.5, max(3.5, 0.32 * len(channels) * len(fits) + 1.5)))
    y = np.arange(len(channels))
    height = 0.8 / len(fits)
    levels = set()
    for i, (label, fit) in enumerate(fits):
        cc = fit.channel_credit.with_columns(pl.col("channel").cast(pl.String))
        rows = {r["channel"]: r for r in cc.iter_rows(named=True)}
        share = np.array([rows[c]["share"] if c in rows else 0.0 for c in channels])
        pos = y + (i - (len(fits) - 1) / 2) * height
        bars = ax.barh(pos, share, height, label=label)
        if "ci_low" in cc.columns:
            low = np.array([rows[c]["ci_low"] if c in rows else 0.0 for c in channels])
            high = np.array([rows[c]["ci_high"] if c in rows else 0.0 for c in channels])
            err = np.vstack([np.clip(share - low, 0, None), np.clip(high - share, 0, None)])
            ax.errorbar(share, pos, xerr=err, fmt="none", ecolor="black", elinewidth=1, capsize=2.5)
            levels.add(fit.model.level)
        else:
            bars.set_label(f"{label} (no bootstrap)")
    ax.set_yticks(y, channels)
    ax.invert_yaxis()
    ax.set_xlabel("share of credit (fraction of 1)")
    ax.set_ylabel("channel")
    interval = f", {', '.join(f'{100 * lv:g} %' for lv in sorted(levels))} bootstrap intervals" if levels else ""
    ax.set_title(f"Data-driven channel shares{interval}")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    if len(fits) > 1 or not levels:
        ax.legend(fontsize="small")
    return ax


# --- Markov ----------------------------------------------------------------------------------------------
_START, _CONVERSION, _NULL = "(start)", "(conversion)", "(null)"


def plot_transition_matrix(fitted: Any, *, ax: Axes | None = None, annotate: bool | None = None) -> Axes:
    """Heatmap of a fitted Markov chain's transition probabilities.

    Parameters
    ----------
    fitted
        A fitted MARKOV model (``result.fitted["MARKOV"]``), or its ``transition_matrix`` frame
        (``from_state``, ``to_state``, ``probability``).
    ax
        Axes to draw on (default: a new figure).
    annotate
        Write each probability in its cell (default: when there are at most 20 states).

    Returns
    -------
    matplotlib.axes.Axes
        One image with rows = from-states (``(start)`` first) and columns = to-states (``(conversion)`` and
        ``(null)`` last); unobserved transitions are 0.
    """
    matrix = _frame(getattr(fitted, "transition_matrix", fitted), "plot_transition_matrix")
    _require(matrix, ["from_state", "to_state", "probability"], "plot_transition_matrix")
    matrix = matrix.with_columns(pl.col("from_state", "to_state").cast(pl.String))
    states = list(dict.fromkeys([*matrix.get_column("from_state").to_list(), *matrix.get_column("to_state").to_list()]))
    absorbing = [s for s in (_CONVERSION, _NULL) if s in states]
    rows = [s for s in states if s not in absorbing]
    rows = ([_START] if _START in rows else []) + [s for s in rows if s != _START]
    cols = [s for s in rows if s != _START] + absorbing
    r_index, c_index = {s: i for i, s in enumerate(rows)}, {s: i for i, s in enumerate(cols)}
    grid = np.zeros((len(rows), len(cols)))
    for a, b, p in matrix.select("from_state", "to_state", "probability").iter_rows():
        grid[r_index[a], c_index[b]] = p
    n = max(len(rows), len(cols))
    ax = _axes(ax, (min(16.0, 2.5 + 0.5 * n), min(14.0, 2.0 + 0.45 * n)))
    image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=max(float(grid.max()), 1e-12), aspect="auto")
    ax.figure.colorbar(image, ax=ax, label="transition probability")
    ax.set_xticks(np.arange(len(cols)), cols, rotation=45, ha="right", fontsize="small" if n > 15 else None)
    ax.set_yticks(np.arange(len(rows)), rows, fontsize="small" if n > 15 else None)
    ax.set_xlabel("to state")
    ax.set_ylabel("from state")
    order = getattr(getattr(fitted, "model", None), "order", None)
    ax.set_title("Markov transition probabilities" + (f" (order {order})" if order else ""))
    if annotate if annotate is not None else n <= 20:
        threshold = 0.6 * grid.max()
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                if grid[i, j] > 0:
                    ax.text(
                        j,
                        i,
                        f"{grid[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6.5,
                        color="black" if grid[i, j] > threshold else "white",
                    )
    return ax


# --- paths -----------------------------------------------------------------------------------------------
def _path_counts(obj: Any) -> pl.DataFrame:
    """``path`` (string ``a > b``), ``conversions``, ``nulls`` from any of the inputs of :func:`plot_paths`."""
    if hasattr(obj, "paths") and hasattr(obj, "channel_credit"):  # a fitted model
        obj = obj.paths
    if hasattr(obj, "links") and hasattr(obj, "credit"):  # an AttributionResult
        obj = obj.links
    if hasattr(obj, "to_frame") and hasattr(obj, "offsets"):  # a PathTable
        frame = obj.to_frame().select(pl.col("path").list.join(" > "), "conversions", "nulls")
        return frame.group_by("path").agg(pl.col("conversions", "nulls").sum())
    frame = _frame(obj, "plot_paths")
    if "conversion_id" in frame.columns:  # links: the converting paths of one model
        _require(frame, ["conversion_id", "position", "channel"], "plot_paths")
        if "model" in frame.columns and frame.height:
            first = frame.get_column("model").cast(pl.String)[0]
            frame = frame.filter(pl.col("model").cast(pl.String) == first)
        paths = (
            frame.sort("conversion_id", "position")
            .group_by("conversion_id", maintain_order=True)
            .agg(pl.col("channel").cast(pl.String).str.join(" > ").alias("path"))
        )
        return paths.group_by("path").agg(pl.len().cast(pl.Float64).alias("conversions"), pl.lit(0.0).alias("nulls"))
    _require(frame, ["path"], "plot_paths")
    conv = next((c for c in ("total_conversions", "conversions") if c in frame.columns), None)
    null = next((c for c in ("total_null", "nulls") if c in frame.columns), None)
    if conv is None:
        raise InputError(f"plot_paths: a paths frame needs total_conversions (or conversions); it has {frame.columns}")
    path = pl.col("path").list.join(" > ") if frame.schema["path"] == pl.List(pl.String) else pl.col("path")
    return (
        frame.select(
            path.alias("path"),
            pl.col(conv).cast(pl.Float64).alias("conversions"),
            (pl.col(null).cast(pl.Float64) if null else pl.lit(0.0)).alias("nulls"),
        )
        .group_by("path")
        .agg(pl.col("conversions", "nulls").sum())
    )


def plot_paths(journeys_or_links: Any, *, top: int = 20, ax: Axes | None = None) -> Axes:
    """The most common paths (channel sequences), as horizontal bars of journeys.

    Parameters
    ----------
    journeys_or_links
        What the paths come from:

        - an :class:`~optiq_engine.AttributionResult` or its ``links`` frame: the converting journeys'
          touchpoint channels in position order (of the first model in the frame);
        - a fitted data-driven model or a :class:`~optiq_engine.PathTable`: every journey it was fitted
          on, converting and not (paths after the model's transform);
        - an aggregated paths frame (``path`` as ``"a > b"`` strings or lists, ``total_conversions`` and
          ``total_null``, ChannelAttribution's format).
    top
        How many paths to draw, most journeys first.
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes
        One bar per path (``min(top, distinct paths)``), split into converting and non-converting journeys
        when the input has both.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError(f"plot_paths: top must be an integer >= 1, got {top!r}")
    counts = _path_counts(journeys_or_links)
    counts = (
        counts.with_columns(total=pl.col("conversions") + pl.col("nulls"))
        .sort(["total", "path"], descending=[True, False])
        .head(top)
    )
    labels = [p if len(p) <= 60 else p[:57] + "..." for p in counts.get_column("path").to_list()]
    ax = _axes(ax, (9.0, max(3.0, 0.3 * len(labels) + 1.2)))
    y = np.arange(len(labels))
    conv = counts.get_column("conversions").to_numpy()
    nulls = counts.get_column("nulls").to_numpy()
    with_nulls = bool(nulls.sum() > 0)
    ax.barh(y, conv, label="converting journeys", color="C2")
    if with_nulls:
        ax.barh(y, nulls, left=conv, label="non-converting journeys", color="C7")
        ax.legend(fontsize="small", loc="lower right")
    ax.set_yticks(y, labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("journeys" if with_nulls else "converting journeys")
    ax.set_ylabel("path")
    ax.set_title(f"Top {len(labels)} paths")
    _thousands(ax, "x")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return ax


# --- accuracy --------------------------------------------------------------------------------------------
def compare_with_truth(result: AttributionResult, truth: Any) -> pl.DataFrame:
    """Every model's channel shares next to the simulator's true shares (the input of :func:`plot_accuracy`).

    Parameters
    ----------
    result
        An :class:`~optiq_engine.AttributionResult` on simulated data.
    truth
        The simulator's ``truth`` frame (``channel``, ``true_share``): ``oq.synthetic.generate(...).truth``.

    Returns
    -------
    polars.DataFrame
        ``model``, ``channel``, ``share``, ``true_share``, ``error`` (``share - true_share``): one row per
        model and channel of either side. ``share`` is ``result.shares()`` (credited conversions over the
        model's total, for every model: the shares of ``plot_credit``'s bars).
    """
    truth = _frame(truth, "compare_with_truth").select(pl.col("channel").cast(pl.String), pl.col("true_share"))
    shares = result.shares()
    _one_type(shares, "compare_with_truth")
    models = [m for m in result.model_names if m in set(shares.get_column("model").to_list())]
    grid = pl.DataFrame({"model": models}).join(
        pl.concat([truth.select("channel"), shares.select("channel")]).unique(maintain_order=True), how="cross"
    )
    return (
        grid.join(shares, on=["model", "channel"], how="left")
        .join(truth, on="channel", how="left")
        .with_columns(pl.col("share", "true_share").fill_null(0.0))
        .with_columns(error=pl.col("share") - pl.col("true_share"))
    )


def plot_accuracy(scores: Any, *, ax: Axes | None = None, annotate: float | None = 0.05) -> Axes:
    """Recovered against true channel shares, every model: points on the diagonal are exact.

    Parameters
    ----------
    scores
        A frame with ``model``, ``channel``, ``share`` (recovered) and ``true_share`` (the simulator's):
        :func:`compare_with_truth`, or built from ``benchmarks/accuracy_results.json``.
    ax
        Axes to draw on (default: a new figure).
    annotate
        Name the channel of every point at least this far from the diagonal (``|share - true_share|``;
        None: no names).

    Returns
    -------
    matplotlib.axes.Axes
        One scatter collection per model (one point per channel) and the diagonal; the legend gives each
        model's total variation distance to the truth, ``½ Σ |share - true_share|`` (0 = perfect).
    """
    frame = _frame(scores, "plot_accuracy")
    _require(frame, ["model", "channel", "share", "true_share"], "plot_accuracy")
    frame = frame.with_columns(pl.col("model", "channel").cast(pl.String))
    models = list(dict.fromkeys(frame.get_column("model").to_list()))
    ax = _axes(ax, (7.5, 6.5))
    top = (
        float(
            max(
                cast(float, frame.get_column("share").max() or 0.0),
                cast(float, frame.get_column("true_share").max() or 0.0),
            )
        )
        * 1.08
    )
    top = top if top > 0 else 1.0
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="exact")
    markers = "osD^v<>Ph*Xd"
    for i, model in enumerate(models):
        rows = frame.filter(pl.col("model") == model)
        tv = 0.5 * float((rows.get_column("share") - rows.get_column("true_share")).abs().sum())
        ax.scatter(
            rows.get_column("true_share"),
            rows.get_column("share"),
            label=f"{model} (TV {tv:.3f})",
            marker=markers[i % len(markers)],
            s=30,
            alpha=0.8,
        )
        if annotate is not None:
            far = rows.filter((pl.col("share") - pl.col("true_share")).abs() >= annotate)
            for channel, share, true in far.select("channel", "share", "true_share").iter_rows():
                ax.annotate(channel, (true, share), xytext=(4, 3), textcoords="offset points", fontsize=7, alpha=0.8)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_aspect("equal")
    ax.set_xlabel("true share (simulator, fraction of 1)")
    ax.set_ylabel("recovered share (fraction of 1)")
    ax.set_title("Recovered vs true channel shares")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", title="model (distance to truth)", title_fontsize="small")
    return ax
