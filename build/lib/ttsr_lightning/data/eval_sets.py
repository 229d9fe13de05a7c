"""Evaluation-set specifications: plain dicts (YAML) that name a dataset and its arguments.

A spec is ``{"dataset": <kind>, "name": <optional>, **arguments of that dataset's class}``, e.g.
``{"dataset": "cufed5", "root": "data/CUFED/test/CUFED5", "ref_level": 1}``. Specs stay plain
primitives so that DataModule hyper-parameters in checkpoints are primitives too. The name (logged as
``test/<name>/psnr``) defaults to the dataset and its reference policy (``CUFED5_L1``, ``CUFED5_LR``,
``CUFED5_stitched``, ``CUFED5_stitched_masa``, ``CUFED5_all5``, ``Sun80``, ``Sun80_all``, ``Urban100``,
``Manga109``, ``Manga109_LR``, ``WR-SR``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ttsr_lightning.data.cufed5 import CUFED5Dataset, parse_ref_level
from ttsr_lightning.data.eval_dataset import EvalDataset
from ttsr_lightning.data.manga109 import Manga109Dataset
from ttsr_lightning.data.sun80 import Sun80Dataset
from ttsr_lightning.data.urban100 import Urban100Dataset
from ttsr_lightning.data.wrsr import WRSRDataset

EVAL_SETS: dict[str, type[EvalDataset]] = {
    "cufed5": CUFED5Dataset,
    "sun80": Sun80Dataset,
    "urban100": Urban100Dataset,
    "manga109": Manga109Dataset,
    "wrsr": WRSRDataset,
}


def plain(value: Any) -> Any:
    """Mappings -> dicts and non-string sequences -> lists, recursively (e.g. from OmegaConf containers)."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain(item) for item in value]
    return value


def eval_set_name(spec: Mapping[str, Any]) -> str:
    """The spec's ``name``, or one derived from its dataset and reference policy."""
    if spec.get("name"):
        return str(spec["name"])
    kind = spec["dataset"]
    if kind == "cufed5":
        level = parse_ref_level(spec.get("ref_level", 1))
        if level == "stitched" and spec.get("stitch_padding") == "replicate_centred":
            return "CUFED5_stitched_masa"
        return "CUFED5_" + {"lr": "LR", "stitched": "stitched", "all5": "all5"}.get(str(level), f"L{level}")
    if kind == "manga109" and spec.get("reference") == "lr":
        return "Manga109_LR"
    if kind == "sun80" and spec.get("reference") == "all":
        return "Sun80_all"
    return {"sun80": "Sun80", "urban100": "Urban100", "manga109": "Manga109", "wrsr": "WR-SR"}[kind]


def validate_eval_set_specs(specs: Sequence[Mapping[str, Any]], key: str) -> list[str]:
    """The names of ``specs``; ValueError naming config ``key`` for an unknown dataset or a repeated name."""
    names = []
    for position, spec in enumerate(specs):
        if not isinstance(spec, Mapping) or spec.get("dataset") not in EVAL_SETS:
            raise ValueError(
                f"{key}[{position}]: expected a mapping with dataset: one of {sorted(EVAL_SETS)}, "
                f"got {spec!r}"
            )
        names.append(eval_set_name(spec))
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"{key}: evaluation-set names must be unique, repeated: {repeated}; give each spec its own name"
        )
    return names


def build_eval_set(spec: Mapping[str, Any]) -> EvalDataset:
    """The dataset a spec describes (its folder tree is validated now, its images when read)."""
    arguments = {key: value for key, value in plain(spec).items() if key not in ("dataset", "name")}
    dataset_class = EVAL_SETS[spec["dataset"]]
    try:
        return dataset_class(**arguments)
    except TypeError as exc:  # an unknown or missing argument: say which spec
        raise TypeError(f"evaluation-set spec {dict(spec)!r}: {exc}") from exc
