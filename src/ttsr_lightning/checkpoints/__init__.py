"""Every weights file of the suite, each kind read and written by one module.

- :mod:`~ttsr_lightning.checkpoints.run_checkpoint`: a training run's Lightning checkpoint (the frozen
  weights left out and restored; a resume's ``ckpt_path`` checked, the loadable ones beside it listed).
- :mod:`~ttsr_lightning.checkpoints.generator_file`: the suite's generator-only file.
- :mod:`~ttsr_lightning.checkpoints.official_weights`: the official ``TTSR.pt`` / ``TTSR-rec.pt`` and
  their renaming to and from the generator's keys.
- :mod:`~ttsr_lightning.checkpoints.loading`: the generator in a file of any kind (``evaluate``,
  ``infer``, ``init_weights``, ``official convert``).
- shared by them: :mod:`~ttsr_lightning.checkpoints.torch_file` (the one ``torch.load``, its failures
  one error naming the file; the atomic ``torch.save``) and :mod:`~ttsr_lightning.checkpoints.weights`
  (the record every kind is read into, recorded configs, finite and fitting weights).
"""
