"""Post-training pruners (magnitude, Wanda, SparseGPT) applied layer by layer with calibration data."""
from .calibration import CalibrationSettings, calibration_samples
from ..method_schemas import OneShotPruneConfig
from .driver import PRUNERS, PruneResult, PruneSpec, prune_for_method, prune_model

__all__ = [
    "PRUNERS",
    "CalibrationSettings",
    "OneShotPruneConfig",
    "PruneResult",
    "PruneSpec",
    "calibration_samples",
    "prune_for_method",
    "prune_model",
]
