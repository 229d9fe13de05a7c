"""AtomicCheckpointIO: every checkpoint of a run (``last.ckpt``, the best ones) is written so that it
cannot be lost, whatever kills the writer."""

from __future__ import annotations

from typing import Any

from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ttsr_lightning.checkpoints.torch_file import save_torch_file


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO``, writing atomically (:func:`ttsr_lightning.files.atomic_write`).

    Lightning's own writer stages the file through fsspec, whose temporary file lives in the system's
    temporary folder: when that is another filesystem than the run folder (a tmpfs ``/tmp``, cluster
    scratch) the final move becomes copy-then-delete, and a kill or a full disk during the copy leaves
    a truncated ``last.ckpt``. Here (:func:`ttsr_lightning.checkpoints.torch_file.save_torch_file`) the
    temporary file is a sibling of the checkpoint, fsynced, then renamed over it: the previous checkpoint
    stays whole until the new one is complete. Give it to the
    trainer as a plugin (``Trainer(plugins=[AtomicCheckpointIO()])``; ``train`` does).
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        save_torch_file(checkpoint, path)
