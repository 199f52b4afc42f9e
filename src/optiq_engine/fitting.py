"""Fitting data-driven models on aggregated paths (ChannelAttribution's input format)."""

from __future__ import annotations

from typing import Any

from .errors import ModelError
from .models import DataDrivenModel, FittedModel, get_model
from .paths import PathTable

__all__ = ["fit_paths"]


def fit_paths(
    paths: Any,
    *,
    model: str | DataDrivenModel = "MARKOV",
    path: str = "path",
    conversions: str = "total_conversions",
    nulls: str = "total_null",
    value: str | None = None,
    sep: str = ">",
    direct_channels: tuple[str, ...] = ("direct",),
    **params: Any,
) -> FittedModel:
    """Fit a data-driven model on aggregated paths.

    Parameters
    ----------
    paths
        A frame with one row per path: ``path`` (``"a > b > c"`` or a list of channels), the number of
        journeys of that path that converted (``conversions``) and that did not (``nulls``), and
        optionally their total value in integer micros (``value``).
    model
        ``"MARKOV"``, ``"SHAPLEY"`` (or a model object, then ``params`` must be empty).
    params
        The model's parameters (``order=2``, ``transform="unique"``, ``bootstrap=200`` ...).

    Examples
    --------
    >>> import polars as pl, optiq_engine as oq
    >>> paths = pl.DataFrame({"path": ["a > b", "b"], "total_conversions": [3, 1], "total_null": [1, 5]})
    >>> oq.fit_paths(paths, model="MARKOV").channel_credit.get_column("share").round(3).to_list()
    [0.286, 0.714]
    """
    if isinstance(model, DataDrivenModel):
        if params:
            raise ModelError("pass parameters either on the model object or as keywords, not both")
        chosen = model
    else:
        cls = get_model(model)
        if not issubclass(cls, DataDrivenModel):
            raise ModelError(f"{cls.name} is not a data-driven model; fit_paths fits MARKOV, SHAPLEY, DATA_DRIVEN")
        try:
            chosen = cls(**params)
        except TypeError as exc:
            raise ModelError(f"{cls.name}: {exc}") from None
    table = PathTable.from_frame(
        paths, path=path, conversions=conversions, nulls=nulls, value=value, sep=sep,
        transform=chosen.transform, remove_direct_if_not_all=chosen.remove_direct_if_not_all,
        direct_channels=direct_channels,
    )  # fmt: skip
    return chosen.fit(table, direct_channels=tuple(direct_channels))
