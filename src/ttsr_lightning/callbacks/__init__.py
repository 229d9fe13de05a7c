"""Lightning callbacks: resumable checkpoints, per-image evaluation results, image panels."""

from ttsr_lightning.callbacks.panels import ImagePanelLogger
from ttsr_lightning.callbacks.results import EvaluationResults
from ttsr_lightning.callbacks.resume import ResumeCheckpoint

__all__ = ["EvaluationResults", "ImagePanelLogger", "ResumeCheckpoint"]
