"""The import graph of src/ flows one way: entry points -> system/callbacks -> models/losses/data."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ttsr_lightning"
ENTRY_POINTS = {
    "__main__",
    "train",
    "evaluate",
    "infer",
    "official",
    "score",
    "tools.params",
    "data.prepare",
    "data.build",
}
# the layer of every other module: a module imports only from its own layer or lower ones
LAYERS = {
    0: (
        "models",
        "losses",
        "errors",
        "config_paths",
        "config_schema",
        "pretrained",
        "rng",
        "distributed",
        "run_folder",
        "files",
        "markdown",
        "nonfinite",
    ),
    1: (
        "budgeted",
        "lpips_setting",
        "data",
        "metrics",
        "panel_images",
        "attention_maps",
        "result_files",
        "provenance",
        "settings",
        "checkpoints",
        "protocols",
        "preflight",
    ),
    2: ("evaluation_module", "system", "callbacks", "builders", "cli", "rehearsal"),
}


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE).with_suffix("")
    parts = [part for part in relative.parts if part != "__init__"]
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return imported_modules(path.read_text(), package)


def is_module(name: str) -> bool:
    folder = PACKAGE.joinpath(*name.split("."))
    return folder.with_suffix(".py").is_file() or (folder / "__init__.py").is_file()


def imported_modules(source: str, package: str) -> set[str]:
    """The modules of ttsr_lightning (named below it) that ``source``, a module of ``package`` ("" for
    the top), imports, in every form: ``import ttsr_lightning.a``, ``from ttsr_lightning.a import x``,
    ``from ttsr_lightning import a``, and the relative ``from .a import x`` and ``from . import a``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                base = parts[: len(parts) - (node.level - 1)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module == "ttsr_lightning" or (node.module or "").startswith("ttsr_lightning."):
                origin = node.module.removeprefix("ttsr_lightning").lstrip(".")
            else:
                continue
            submodules = {f"{origin}.{a.name}".lstrip(".") for a in node.names}
            found |= {name for name in submodules if is_module(name)} or {origin}
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("ttsr_lightning.")
                for a in node.names
                if a.name.startswith("ttsr_lightning.")
            }
    return found - {""}


def layer(module: str) -> int:
    if module in ENTRY_POINTS:
        return 3
    top = module.split(".")[0]
    return next(level for level, names in LAYERS.items() if top in names)


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_form_of_import_is_seen() -> None:
    source = """
import ttsr_lightning.infer
from ttsr_lightning.score import main
from ttsr_lightning import official
from . import evaluate
from .data import prepare
from .models import TTSRGenerator
"""
    found = {"infer", "score", "official", "evaluate", "data.prepare", "models"}
    assert imported_modules(source, "") == found
    assert imported_modules("from .. import train\nfrom .generator import x", "models") == {
        "train",
        "models.generator",
    }


def test_every_import_goes_down_the_layers_and_no_entry_point_imports_another() -> None:
    edges = graph()
    assert set(edges) >= ENTRY_POINTS
    for module, imported in edges.items():
        for target in imported:
            same_package = target.split(".")[0] == module.split(".")[0]
            if module in ENTRY_POINTS and target in ENTRY_POINTS:
                assert (module, target) == ("__main__", "train"), f"{module} imports the entry point {target}"
            elif not same_package:
                assert layer(target) <= layer(module), f"{module} (layer {layer(module)}) imports {target}"


def test_pure_modules_import_torch_only() -> None:
    for folder in ("models", "losses"):
        for path in (PACKAGE / folder).rglob("*.py"):
            third_party = set()
            for node in ast.walk(ast.parse(path.read_text())):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
                third_party |= {n.split(".")[0] for n in names if n}
            # triton: the optional CUDA kernel of the relevance search (imported only where installed)
            assert third_party - set(sys.stdlib_module_names) <= {"torch", "ttsr_lightning", "triton"}, (
                path,
                third_party,
            )


def test_models_know_nothing_of_memory_files_or_the_budgeted_forward() -> None:
    """Networks only: no memory budget, no file or process reads (budgeted/ runs them within a budget).
    The one way out: ``pretrained``, which finds the ImageNet weights a VGG19 starts from."""
    for path in (PACKAGE / "models").rglob("*.py"):
        imported = imports(path)
        assert {name.split(".")[0] for name in imported} <= {"models", "pretrained", "errors"}, (
            path.name,
            imported,
        )
        stdlib = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                stdlib |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                stdlib.add(node.module.split(".")[0])
        assert not stdlib & {"os", "pathlib", "io", "shutil", "subprocess", "tempfile"}, (path.name, stdlib)


def test_the_budgeted_forward_runs_models_and_reads_nothing_above_them() -> None:
    for module, imported in graph().items():
        if module.startswith("budgeted"):
            assert {name.split(".")[0] for name in imported} <= {"budgeted", "models"}, (module, imported)


def test_evaluate_imports_nothing_from_train_or_infer() -> None:
    assert not graph()["evaluate"] & {"train", "infer"}


def test_training_and_evaluation_reach_the_generator_through_its_interface() -> None:
    """No TTSR part by name where any generator goes (models/interface.py): TTSR's own features check
    isinstance first (checkpoints, infer's memory budget)."""
    for module in ("system", "evaluation_module", "train", "evaluate"):
        text = (PACKAGE / f"{module}.py").read_text()
        for part in (".lte", ".main_net", ".search_transfer", ".config["):
            assert f"generator{part}" not in text, (module, part)
