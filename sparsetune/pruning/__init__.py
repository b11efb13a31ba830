"""Post-training pruners (magnitude, Wanda, SparseGPT, DSnoT) applied layer by layer with calibration data."""
from ..method_schemas import OneShotPruneConfig
from .calibration import CalibrationSettings, calibration_samples
from .driver import PRUNERS, PruneResult, PruneSpec, prune_for_method, prune_model
from .dsnot import DSnoTSettings

__all__ = [
    "PRUNERS",
    "CalibrationSettings",
    "DSnoTSettings",
    "OneShotPruneConfig",
    "PruneResult",
    "PruneSpec",
    "calibration_samples",
    "prune_for_method",
    "prune_model",
]
