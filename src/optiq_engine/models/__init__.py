"""Attribution models: one class per model, looked up by the seed's enum name."""

from .base import AttributionModel, HeuristicModel, available_models, get_model, register_model
from .heuristic import HEURISTIC_MODELS, FirstTouch, LastNonDirect, LastTouch, Linear, PositionBased, TimeDecay

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
]
