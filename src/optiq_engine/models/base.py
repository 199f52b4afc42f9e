"""The model interface and the registry that maps the seed's enum names to model classes."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ..errors import ConfigError, ModelError, did_you_mean

if TYPE_CHECKING:
    from ..config import AttributionConfig

__all__ = ["AttributionModel", "HeuristicModel", "register_model", "get_model", "available_models", "resolve_models"]

_REGISTRY: dict[str, type[AttributionModel]] = {}


class AttributionModel:
    """Base of every attribution model; ``name`` is the seed's ``AttributionModel`` enum value."""

    name: ClassVar[str]

    @classmethod
    def from_config(cls, config: AttributionConfig) -> AttributionModel:
        """The model with its parameters taken from ``config`` (used when a model is given by name).

        Parameters
        ----------
        config
            The run's options; this base class takes none of them (a model without parameters).

        Returns
        -------
        AttributionModel
            An instance of ``cls``.
        """
        return cls()


class HeuristicModel(AttributionModel):
    """A rule-based model computed by :func:`optiq_engine.kernels.weights.heuristic_links`."""

    def kernel_spec(self) -> tuple[int, float, float]:
        """(kernel code, first parameter, second parameter)."""
        raise NotImplementedError


def register_model(cls: type[AttributionModel]) -> type[AttributionModel]:
    """Class decorator: make ``cls`` available under ``cls.name``.

    Parameters
    ----------
    cls
        A model class with a ``name`` (the seed's ``AttributionModel`` enum value); it replaces a class
        registered under the same name.

    Returns
    -------
    type
        ``cls`` itself.
    """
    _REGISTRY[cls.name] = cls
    return cls


def available_models() -> tuple[str, ...]:
    """Names of every registered model: the heuristic ones first, each group in registration order."""
    return tuple(sorted(_REGISTRY, key=lambda n: not issubclass(_REGISTRY[n], HeuristicModel)))


def get_model(name: str) -> type[AttributionModel]:
    """The model class registered under ``name`` (case-insensitive).

    Parameters
    ----------
    name
        A model name such as ``"LINEAR"`` or ``"markov"``.

    Returns
    -------
    type of AttributionModel
        The class (not an instance: call it, or its ``from_config``, for one).

    Raises
    ------
    ModelError
        No model is registered under ``name`` (or it is not a string); the message suggests the closest
        name and lists the valid ones.
    """
    key = name.upper() if isinstance(name, str) else name
    try:
        return _REGISTRY[key]
    except (KeyError, TypeError):
        raise ModelError(
            f"unknown model {name!r}{did_you_mean(str(name).upper(), available_models(), n=1)}; "
            f"valid choices: {', '.join(available_models())}"
        ) from None


def resolve_models(
    models: object, config: AttributionConfig, *, default: tuple[str, ...]
) -> tuple[AttributionModel, ...]:
    """Model objects for ``models`` (names, model objects, or None for ``default``); names are unique.

    Parameters
    ----------
    models
        A name, a model object, a model class, or a sequence of them; None: ``default``. Names and classes
        are instantiated with :meth:`AttributionModel.from_config` of ``config``; objects are used as given.
    config
        The run's options, for the models given by name or class.
    default
        The names used when ``models`` is None.

    Returns
    -------
    tuple of AttributionModel
        One object per model, in the order given.

    Raises
    ------
    ModelError
        An unknown name, the same model name twice, or no model at all.
    ConfigError
        A model's options taken from ``config`` are invalid (e.g. DATA_DRIVEN's ``experiments``).
    """
    if models is None:
        models = default
    if isinstance(models, (str, AttributionModel)):
        models = [models]
    out: list[AttributionModel] = []
    for m in models:  # type: ignore[attr-defined]
        if isinstance(m, AttributionModel):
            _refuse_unreached_options(m, config)
            out.append(m)
        elif isinstance(m, type) and issubclass(m, AttributionModel):
            out.append(m.from_config(config))
        else:
            out.append(get_model(m).from_config(config))
    names = [m.name for m in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ModelError(f"model(s) {', '.join(dupes)} given more than once; run attribute() once per variant")
    if not out:
        raise ModelError(f"no model given; valid choices: {', '.join(available_models())}")
    if config.experiments and "DATA_DRIVEN" not in names:
        raise ConfigError(
            f"experiments calibrate DATA_DRIVEN, which the run does not have (models: {', '.join(names)}): add "
            "'DATA_DRIVEN' to models, or leave experiments out"
        )
    return tuple(out)


def _refuse_unreached_options(model: AttributionModel, config: AttributionConfig) -> None:
    """A run option that a model given by name takes from ``config`` (its ``config_fields``), set to other than
    its default, while the model object given has another value: a :class:`ConfigError`. Objects are used as
    given, so ``attribute(models=[DataDriven()], bootstrap=50)`` would otherwise run without intervals, silently.
    """
    defaults = type(config)()
    for name, source in getattr(type(model), "config_fields", {}).items():
        given, own = getattr(config, source), getattr(model, name)
        if given != getattr(defaults, source) and own != given:
            raise ConfigError(
                f"{source}={given!r} does not reach the model object {model.name} (its {name} is {own!r}): "
                f"set it on the object, e.g. {type(model).__name__}({name}={given!r}), or give the model by name"
            )
