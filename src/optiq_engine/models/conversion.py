"""DATA_DRIVEN: a fitted conversion model decomposed per journey by exact Shapley values (docs/data_driven.md §6).

The code is in :mod:`optiq_engine.models.data_driven` (the model and its fit, the fixed forms, the candidates of
``form="auto"`` and their choice, experiments, bootstrap, the fitted model); every name imported from this
module before it was split is importable from here (``name as name``: re-exported).
"""

from .data_driven.bootstrap import _one_step_solver as _one_step_solver
from .data_driven.experiments import experiment_periods as experiment_periods
from .data_driven.fitted import FittedDataDriven
from .data_driven.fixed_form import ConversionModel
from .data_driven.form_choice import _THINNING_REPLICATE as _THINNING_REPLICATE
from .data_driven.form_choice import AUTO_DECAYS, AUTO_SHAPES
from .data_driven.form_choice import AUTO_FORMS as AUTO_FORMS
from .data_driven.form_choice import AUTO_SATURATIONS as AUTO_SATURATIONS
from .data_driven.form_choice import SELECT_JOURNEYS as SELECT_JOURNEYS
from .data_driven.form_choice import bic_weights as bic_weights
from .data_driven.form_choice import choose_candidates as choose_candidates
from .data_driven.form_choice import fit_candidates as fit_candidates
from .data_driven.journey_model import JourneyModel
from .data_driven.journey_model import _fit_one as _fit_one
from .data_driven.journey_model import shape_label as shape_label
from .data_driven.model import DataDriven

__all__ = ["DataDriven", "FittedDataDriven", "ConversionModel", "JourneyModel", "AUTO_DECAYS", "AUTO_SHAPES"]
