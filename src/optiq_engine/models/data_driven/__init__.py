"""DATA_DRIVEN: a fitted conversion model decomposed per journey by exact Shapley values (docs/data_driven.md §6).

The modules: ``model`` (:class:`DataDriven`: its options and its fit), ``fixed_form`` (:class:`ConversionModel`:
the forms ``"touch"`` and ``"journey"`` given by the user), ``journey_model`` (:class:`JourneyModel`: one candidate
of ``form="auto"`` and its penalised fit), ``form_choice`` (the candidates of ``form="auto"`` and their BIC
weights), ``experiments`` (lift tests in the fit), ``bootstrap`` (the replicates of ``form="auto"``) and
``fitted`` (:class:`FittedDataDriven`). :mod:`optiq_engine.models.conversion` re-exports their names.
"""

from .fitted import FittedDataDriven
from .model import DataDriven

__all__ = ["DataDriven", "FittedDataDriven"]
