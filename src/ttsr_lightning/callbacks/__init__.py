"""Lightning callbacks: resumable checkpoints (and their atomic writer plugin), per-image evaluation
results, image panels, the rehearsal's probe."""

from ttsr_lightning.callbacks.checkpoint_io import AtomicCheckpointIO
from ttsr_lightning.callbacks.evaluation_results import EvaluationResults
from ttsr_lightning.callbacks.panel_logger import ImagePanelLogger
from ttsr_lightning.callbacks.rehearsal_probe import RehearsalProbe
from ttsr_lightning.callbacks.resume import ResumeCheckpoint

__all__ = [
    "AtomicCheckpointIO",
    "EvaluationResults",
    "ImagePanelLogger",
    "RehearsalProbe",
    "ResumeCheckpoint",
]
