"""Errors raised by the datasets: each message names the file or folder and what was expected."""

from __future__ import annotations

from collections.abc import Sequence


class DatasetError(Exception):
    """Base class: a dataset on disk is not what the suite expects."""


class DatasetLayoutError(DatasetError):
    """The folder tree is wrong (missing folder, names that do not pair up, missing references, ...).

    Raised when a dataset is constructed, before any image is decoded. ``problems`` lists every problem
    found, one line each, so the preparation CLI can print them all.
    """

    def __init__(self, dataset: str, problems: Sequence[str], shown: int = 10) -> None:
        self.dataset = dataset
        self.problems = list(problems)
        lines = self.problems[:shown]
        if len(self.problems) > shown:
            lines.append(f"... and {len(self.problems) - shown} more")
        super().__init__(f"{dataset}: " + "\n  ".join(["invalid dataset layout:", *lines]))


class ImageError(DatasetError):
    """One image file cannot be used: unreadable, truncated, unsupported colour mode or too small.

    Raised when the image is read (in ``__getitem__``), naming the file.
    """
