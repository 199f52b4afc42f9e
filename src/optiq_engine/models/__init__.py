"""Attribution models: one class per model, looked up by the seed's enum name."""

from .base import AttributionModel, HeuristicModel, available_models, get_model, register_model
from .conversion import DataDriven, FittedDataDriven
from .fitted import DataDrivenModel, FittedModel
from .heuristic import HEURISTIC_MODELS, FirstTouch, LastNonDirect, LastTouch, Linear, PositionBased, TimeDecay
from .markov import FittedMarkov, Markov
from .shapley import FittedShapley, Shapley

__all__ = [
    "AttributionModel",
    "HeuristicModel",
    "available_models",
    "get_model",
    "register_model",
    "HEURISTIC_MODELS",
    "FirstTouch",
    "LastTouch",
    "LastNonDirect",
    "Linear",
    "PositionBased",
    "TimeDecay",
    "DataDrivenModel",
    "FittedModel",
    "Markov",
    "FittedMarkov",
    "Shapley",
    "FittedShapley",
    "DataDriven",
    "FittedDataDriven",
]
