"""The library (data/, model/, losses/, evaluation/, head/, synthetic/) never imports the application (config, builders, checks,
commands, training, tools, cli) nor HF's Trainer classes: what a library module needs comes in as plain
arguments, so it can be used, tested and read without the config system."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "fgclip"
LIBRARY = ("data", "model", "losses", "evaluation", "head", "synthetic")
APPLICATION = ("fgclip.config", "fgclip.builders", "fgclip.checks", "fgclip.commands", "fgclip.training",
               "fgclip.tools", "fgclip.cli")  # fmt: skip
TRAINER_NAMES = {"Trainer", "TrainerCallback", "TrainingArguments", "TrainerState", "TrainerControl"}


def _imports(path: Path) -> list[tuple[str, set[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, set()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, {alias.name for alias in node.names}))
    return found


LIBRARY_FILES = sorted(p for part in LIBRARY for p in (PACKAGE / part).rglob("*.py"))


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_module_imports_no_application_code(path):
    for module, names in _imports(path):
        assert not any(module == app or module.startswith(f"{app}.") for app in APPLICATION), (path, module)
        if module.startswith("transformers"):
            assert not names & TRAINER_NAMES and "trainer" not in module, (path, module, names)


def test_the_library_is_not_empty():
    assert len(LIBRARY_FILES) > 30


@pytest.mark.parametrize("path", sorted((PACKAGE / "synthetic").rglob("*.py")), ids=lambda p: p.name)
def test_the_synthetic_benchmark_imports_only_itself_and_the_data_library(path):
    for module, _ in _imports(path):
        if module.startswith("fgclip"):
            assert module.startswith(("fgclip.synthetic", "fgclip.data")), (path, module)
