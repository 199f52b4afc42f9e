"""``optiq attribute``: attribution of Parquet or CSV files, in this process or on Spark (no database), and
the progress display and compile-time accounting that ``optiq demo`` shares with it."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .._interrupt import handle_signals
from ..config import AttributionConfig
from ..errors import ConfigError
from .output import compile_seconds, console, credit_table, err, fail, one_line_errors, stages

if TYPE_CHECKING:  # Polars, the models and the pipeline are imported inside the commands: `optiq --help` stays fast
    from collections.abc import Callable

    from ..result import AttributionResult

_STAGES = {
    "validate": "validating input",
    "encode": "encoding keys and channels",
    "sort": "sorting by user and time",
    "match": "matching lookback windows",
    "weights": "computing weights and value",
    "frames": "building result frames",
}


def attribute_with_progress(
    touchpoints, conversions, models: list[str] | None, config: AttributionConfig, by: str | None = None
) -> tuple[AttributionResult, dict[str, float]]:
    """Attribute with a progress display; also return the seconds spent compiling Numba kernels, by stage
    (``"starting"`` before the first), so the caller can report compilation apart from run time. ``by``:
    credit per conversion type (docs/attribution.md, "Conversion types"; stages named ``"<type>: <stage>"``)."""
    from ..conversion_types import attribute_by_name
    from ..pipeline import run_attribution

    compiling: dict[str, float] = {}
    current, mark = ["starting"], [compile_seconds()]

    def account(stage: str | None) -> None:
        now = compile_seconds()
        if now > mark[0]:
            compiling[current[0]] = compiling.get(current[0], 0.0) + now - mark[0]
        if stage is not None:
            current[0], mark[0] = stage, now

    with stages("attributing") as show:

        def on_stage(stage: str) -> None:
            kind, _, step = stage.rpartition(": ")
            account(step)
            show(f"{kind}: {_STAGES.get(step, step)}" if kind else _STAGES.get(step, step))

        if by is not None:
            result = attribute_by_name(touchpoints, conversions, models=models, config=config, on_stage=on_stage)
        else:
            result = run_attribution(touchpoints, conversions, models=models, config=config, on_stage=on_stage)
    account(None)
    return result, compiling


def stage_timings(timings: dict[str, float], compiling: dict[str, float]) -> str:
    """``stage 0.12s, ...``: each stage's seconds without the Numba compilation it triggered."""
    return ", ".join(f"{k} {max(v - compiling.get(k, 0.0), 0.0):.2f}s" for k, v in timings.items())


def _print_compile_time(seconds: float) -> None:
    """Say how long compiling Numba kernels took, if this command compiled any (a fresh environment)."""
    if seconds > 0:
        err.print(
            f"compiling Numba kernels took {seconds:.2f}s (first use in this environment; "
            "later runs load them from the on-disk cache; optiq warmup compiles them ahead of time)",
            soft_wrap=True,
        )


#: The heuristic models' path rules (AttributionConfig.touch_rule, drop_direct, max_touchpoints).
TouchRuleFlag = Annotated[
    str,
    typer.Option(
        help="Touches credited by the heuristic models: all, collapse_repeats or first_per_channel (docs/attribution.md, Path rules)."
    ),
]
DropDirectFlag = Annotated[
    str, typer.Option(help="Direct touches left out: never, unless_all_direct or trailing_unless_all_direct.")
]
MaxTouchpointsFlag = Annotated[
    int | None,
    typer.Option(help="Credit only the latest N touches of each conversion (default: all).", show_default=False),
]


def attribute(
    touchpoints: Annotated[
        Path, typer.Option(help="Parquet or CSV file (by extension), or a directory of either, of touchpoints.")
    ],
    conversions: Annotated[
        Path, typer.Option(help="Parquet or CSV file (by extension), or a directory of either, of conversions.")
    ],
    out: Annotated[Path, typer.Option(help="Output directory for links/credit/unattributed Parquet files.")],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", metavar="NAME", help="Model name (repeat); default all heuristic models."),
    ] = None,
    lookback_days: Annotated[float, typer.Option(help="Lookback window in days.")] = 30.0,
    reset_after_conversion: Annotated[bool, typer.Option(help="A touchpoint counts for one conversion only.")] = True,
    quarantine: Annotated[bool, typer.Option(help="Set invalid rows aside instead of failing.")] = False,
    value_column: Annotated[
        str | None, typer.Option(help="The conversions' money column (default value_micros).")
    ] = None,
    value_unit: Annotated[
        str, typer.Option(help="micros (integers) or currency (e.g. 49.99, converted exactly to micros).")
    ] = "micros",
    timezone: Annotated[
        str | None, typer.Option(help="IANA zone of times without an offset (default: UTC, with a warning).")
    ] = None,
    timestamp_format: Annotated[
        str | None, typer.Option(help="strftime format of times not in ISO 8601, e.g. '%m/%d/%Y %H:%M'.")
    ] = None,
    partitions: Annotated[
        int, typer.Option(help="Process users in this many slices (by a hash of anon_id) to bound memory.")
    ] = 1,
    touch_rule: TouchRuleFlag = "all",
    drop_direct: DropDirectFlag = "never",
    max_touchpoints: MaxTouchpointsFlag = None,
    by: Annotated[
        str | None,
        typer.Option(
            help="name: attribute each conversion type (the conversions' name column) on its own (docs/attribution.md, Conversion types).",
            show_default=False,
        ),
    ] = None,
    identity: Annotated[
        str,
        typer.Option(
            help="anon_id (each cookie) or stitched (anon ids joined by the user_id column; docs/contract.md §1.5)."
        ),
    ] = "anon_id",
    # --- engine spark (optiq_engine.spark.cli) ---
    engine: Annotated[
        str, typer.Option(help="local (this process) or spark (--partitions: Spark partitions).")
    ] = "local",
    master: Annotated[str | None, typer.Option(help="Spark master URL with --engine spark (default local[*]).")] = None,
) -> None:
    """Attribute conversions to touchpoints from Parquet or CSV files (no database needed).

    Writes links.parquet (links/part-*.parquet with --partitions > 1), credit.parquet and
    unattributed.parquet; the previous files stay intact if the run fails or is stopped (SIGINT or
    SIGTERM: exit 130 or 143, no staging left). With --engine spark: Parquet datasets links/ (by
    conversion date), unattributed/ and credit/.
    """
    if engine not in ("local", "spark"):
        fail(f"--engine must be local or spark, got {engine!r}")
    if by is not None and (engine == "spark" or partitions > 1):
        fail("--by name runs with --engine local and --partitions 1 (credit per conversion type)")
    # Built by each engine's path, where its errors are reported (the local one checks --by first).
    config = partial(
        AttributionConfig,
        lookback=timedelta(days=lookback_days),
        reset_after_conversion=reset_after_conversion,
        on_invalid="quarantine" if quarantine else "raise",
        value_column=value_column,
        value_unit=value_unit,  # type: ignore[arg-type]
        timezone=timezone,
        timestamp_format=timestamp_format,
        touch_rule=touch_rule,  # type: ignore[arg-type]
        drop_direct=drop_direct,  # type: ignore[arg-type]
        max_touchpoints=max_touchpoints,
        identity=identity,  # type: ignore[arg-type]
    )
    if engine == "spark":
        _attribute_on_spark(
            touchpoints, conversions, out, models=model or None, config=config, partitions=partitions, master=master
        )
        return
    summaries, counts, compiled = _attribute_locally(
        touchpoints,
        conversions,
        out,
        models=model or None,
        config=config,
        partitions=partitions,
        by=by,
        identity=identity,
    )
    _report(summaries, counts, out, compiled)


# --- engine spark (optiq_engine.spark.cli) ---
def _attribute_on_spark(
    touchpoints: Path,
    conversions: Path,
    out: Path,
    *,
    models: list[str] | None,
    config: Callable[[], AttributionConfig],
    partitions: int,
    master: str | None,
) -> None:
    """``--engine spark``: the Spark path, imported only when asked for (the CLI sits above ``spark/``)."""
    from ..spark.cli import attribute_command

    with one_line_errors():
        attribute_command(
            touchpoints,
            conversions,
            out,
            models=models,
            config=config(),
            partitions=partitions if partitions > 1 else None,
            master=master,
        )


# --- end engine spark ---
def _attribute_locally(
    touchpoints: Path,
    conversions: Path,
    out: Path,
    *,
    models: list[str] | None,
    config: Callable[[], AttributionConfig],
    partitions: int,
    by: str | None,
    identity: str,
) -> tuple[list[AttributionResult], dict[str, int], float]:
    """Attribute in this process, slice by slice, writing each slice's result; return the slices' results
    without their links, the rows written, and the compile seconds counted before the run."""
    with one_line_errors(), handle_signals():  # SIGINT/SIGTERM: stop at a safe point, exit 130/143
        from ..conversion_types import check_by
        from ..io.parquet import ResultWriter, iter_partitions  # a signal while importing is deferred too
        from ..models.fitted import data_driven_names

        check_by(by)
        compiled = compile_seconds()
        settings = config()
        if identity == "stitched" and partitions > 1:
            raise ConfigError("--identity stitched joins anon ids of any slice into one person: use --partitions 1")
        fitted_together = data_driven_names(models, settings)
        if fitted_together and partitions > 1:
            raise ConfigError(f"{', '.join(fitted_together)} fit on all users at once: use --partitions 1")
        summaries = []
        with ResultWriter(out, partitioned=partitions > 1) as writer:
            for i, (tp, cv) in enumerate(iter_partitions(touchpoints, conversions, partitions=partitions)):
                if partitions > 1:
                    err.print(f"partition {i + 1}/{partitions}: {tp.height:,} touchpoints, {cv.height:,} conversions")
                result, _ = attribute_with_progress(tp, cv, models, settings, by)
                writer.write(result)
                summaries.append(result.without_links())
    return summaries, writer.counts, compiled


def _report(summaries: list[AttributionResult], counts: dict[str, int], out: Path, compiled: float) -> None:
    """The credit table of the whole run, what was written, and the Numba compile time if there was any."""
    import polars as pl

    from ..result import combine_credit

    console.print(credit_table(summaries[0], combine_credit([r.credit for r in summaries])))
    quarantined = counts.get("quarantined_touchpoints", 0) + counts.get("quarantined_conversions", 0)
    left = pl.concat([r.unattributed.select("model") for r in summaries])
    baseline = left.drop_nulls("model").group_by("model", maintain_order=True).len().iter_rows()
    console.print(
        f"wrote {counts['links']:,} links, {left.get_column('model').null_count():,} conversions unattributed by "
        "every model (no eligible touchpoint)"
        + "".join(f", {n:,} baseline conversions of {name} (credited to no channel by it)" for name, n in baseline)
        + (f", {quarantined:,} quarantined rows" if quarantined else "")
        + f" to {out}",
        soft_wrap=True,
    )
    if summaries[0].identity is not None:
        console.print(summaries[0].identity.message(), soft_wrap=True)
    _print_compile_time(compile_seconds() - compiled)
