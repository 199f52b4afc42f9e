"""``attribute()``: the public entry point, one run (:mod:`.pipeline`) or one per conversion type
(:mod:`.conversion_types`), with an optional progress bar."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .config import AttributionConfig
from .conversion_types import attribute_by_name, check_by
from .errors import ConfigError
from .models import AttributionModel, FittedModel
from .pipeline import run_attribution
from .result import AttributionResult

__all__ = ["attribute"]


def attribute(
    touchpoints: Any,
    conversions: Any,
    *,
    models: Sequence[str | AttributionModel] | str | AttributionModel | None = None,
    config: AttributionConfig | None = None,
    fitted: dict[str, FittedModel] | None = None,
    progress: bool = False,
    by: str | None = None,
    conversion_types: Mapping[str, Mapping[str, Any]] | None = None,
    **options: Any,
) -> AttributionResult:
    """Attribute conversions to touchpoints with one or more models.

    Parameters
    ----------
    touchpoints, conversions
        Frames in the contract of docs/contract.md §1 (polars, pyarrow or pandas).
    models
        Model names (``"LINEAR"``) or model objects (``models.PositionBased(first=0.2, last=0.6)``);
        ``None`` runs every heuristic model.
    config
        An :class:`AttributionConfig`; ``options`` override its fields (``lookback=timedelta(days=7)``).
    fitted
        Data-driven models already fitted (``{"MARKOV": fit}``, e.g. on the path tables of every
        partition): their touchpoints are credited with these fits instead of fitting on this data.
    progress
        Show the running stage (a Rich progress display; it renders in terminals and notebooks).
    by
        ``"name"``: attribute each conversion type (the conversions' ``name`` column) on its own, with its own
        windows and data-driven fits; ``links``, ``credit`` and ``shares()`` get a ``conversion_name``
        column (docs/attribution.md "Conversion types", :mod:`optiq_engine.conversion_types`). Default None:
        all conversions together.
    conversion_types
        With ``by="name"``: per conversion name, options that replace these (``{"purchase": {"lookback":
        timedelta(days=90), "models": ["LAST_TOUCH"]}}``).
    **options
        :class:`AttributionConfig` fields, over ``config``'s (``lookback=timedelta(days=7)``,
        ``on_invalid="quarantine"``); an unknown name is a :class:`ConfigError`.

    Returns
    -------
    AttributionResult
        ``links``, ``credit``, ``unattributed`` (and ``quarantined`` rows, ``timings``).

    Raises
    ------
    ConfigError, ModelError
        Bad options or model names.
    SchemaError, InputError
        Missing columns, invalid rows (unless ``on_invalid="quarantine"``), duplicate ids.

    Examples
    --------
    >>> import optiq_engine as oq
    >>> data = oq.synthetic.generate(n_users=1_000, seed=1)
    >>> result = oq.attribute(data.touchpoints, data.conversions, models=["LINEAR", "LAST_TOUCH"])
    >>> result.credit.columns
    ['model', 'channel', 'conversions', 'value_micros']
    """
    cfg = (config or AttributionConfig()).with_options(**options)
    if by is not None or conversion_types is not None:
        run = _by_name(touchpoints, conversions, models, cfg, fitted, by, conversion_types)
        return _with_progress(run) if progress else run()
    run = functools.partial(run_attribution, touchpoints, conversions, models=models, config=cfg, fitted=fitted)
    return _with_progress(run) if progress else run()


def _by_name(
    touchpoints: Any,
    conversions: Any,
    models: Any,
    cfg: AttributionConfig,
    fitted: dict[str, FittedModel] | None,
    by: str | None,
    conversion_types: Mapping[str, Mapping[str, Any]] | None,
) -> Callable[..., AttributionResult]:
    """:func:`attribute` with ``by``, ready to run (:func:`optiq_engine.conversion_types.attribute_by_name`)."""
    check_by(by)
    if by is None:
        raise ConfigError("conversion_types needs by='name' (one attribution per conversion type)")
    if fitted:
        raise ConfigError("fitted= cannot be used with by='name' yet (a fit is per conversion type): leave one out")
    return functools.partial(
        attribute_by_name, touchpoints, conversions, models=models, config=cfg, conversion_types=conversion_types
    )


def _with_progress(run: Callable[..., AttributionResult]) -> AttributionResult:
    """``run(on_stage=...)`` under a transient Rich spinner that names the stage running."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("attribute", total=None)
        return run(on_stage=lambda stage: bar.update(task, description=f"attribute: {stage}"))
