"""Command-line helpers (``python -m ttsr_lightning.tools.<name>``)."""
