"""Fitting data-driven models on aggregated paths (ChannelAttribution's input format)."""

from __future__ import annotations

from typing import Any

from ..errors import ModelError
from ..models import DataDrivenModel, FittedModel, get_model
from .table import PathTable

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
        A pandas, polars or Arrow frame with one row per path and these columns (their default names;
        the keywords below rename them):

        - ``"path"``: a string of channels joined by ``sep`` (``"a > b > c"``; names stripped of
          surrounding spaces) or a list of channel strings. A null or empty path is refused.
        - ``"total_conversions"``: the number of journeys of that path that converted, and
          ``"total_null"``: the number that did not. Any numeric dtype (fractions allowed); null,
          negative or non-finite counts are refused.
        - the ``value`` column, only when ``value`` names one: the paths' total conversion value in
          integer micros (a float column is refused; nulls count as 0, negatives are refused).
    model
        ``"MARKOV"``, ``"SHAPLEY"`` or ``"DATA_DRIVEN"``, in any case (or a model object, then
        ``params`` must be empty).
    path, conversions, nulls
        The names of the path and count columns, if not ``"path"``, ``"total_conversions"`` and
        ``"total_null"`` (a frame with columns named ``conversions`` and ``nulls`` needs
        ``conversions="conversions", nulls="nulls"``).
    value
        The name of the value column (default: none, every value 0).
    sep
        The separator of string paths.
    direct_channels
        The channels a model with ``remove_direct_if_not_all`` treats as direct.
    params
        The model's parameters (``order=2``, ``transform="unique"``, ``bootstrap=200`` ...).

    Returns
    -------
    FittedModel
        The fitted model: ``channel_credit`` holds each channel's share, conversions and value.

    Raises
    ------
    ConfigError
        A column is missing, has the wrong dtype, or ``sep`` is empty; a model parameter has an invalid value
        (``order=7``).
    InputError
        Null, negative or non-finite counts, negative values, null or empty paths (with counts).
    ModelError
        ``model`` is not a data-driven model, a parameter name is unknown, or parameters are given both on a
        model object and as keywords; the fit fails (too many MARKOV states, more than 64 SHAPLEY channels,
        DATA_DRIVEN not converging).

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
        paths,
        path=path,
        conversions=conversions,
        nulls=nulls,
        value=value,
        sep=sep,
        transform=chosen.transform,
        remove_direct_if_not_all=chosen.remove_direct_if_not_all,
        direct_channels=direct_channels,
    )
    return chosen.fit(table, direct_channels=tuple(direct_channels))
