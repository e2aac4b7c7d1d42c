"""One direction of imports, in the library and in the application.

Library (data/, model/, losses/, evaluation/, head/, synthetic/, standin/, configs/, distributed.py): never
imports the application (config, builders, checks, commands, training, tools, cli) nor HF's Trainer classes:
what a library module needs comes in as plain arguments, so it can be used, tested and read without the config
system. Inside it, the model names its own temperatures and imports no loss code, and the synthetic benchmark
imports only the data library.

Application: commands -> tools -> builders -> checks -> (config, training) -> library. A module imports only
its own layer or a lower one, and a command never imports another command (what two commands share lives in a
private `commands/_*.py` helper or below the commands).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "fgclip"
LIBRARY = (
    "data",
    "model",
    "losses",
    "evaluation",
    "head",
    "synthetic",
    "standin",
    "configs",
    "distributed.py",
)
APPLICATION = ("fgclip.config", "fgclip.builders", "fgclip.checks", "fgclip.commands", "fgclip.training",
               "fgclip.tools", "fgclip.cli")  # fmt: skip
# application layers, highest first: a module may import its own layer and those below it (and the library)
LAYERS = (
    ("fgclip.cli", "fgclip.commands"),
    ("fgclip.tools",),
    ("fgclip.builders",),
    ("fgclip.checks",),
    ("fgclip.config", "fgclip.training"),
)
TRAINER_NAMES = {"Trainer", "TrainerCallback", "TrainingArguments", "TrainerState", "TrainerControl"}


def _imports(path: Path) -> list[tuple[str, set[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, set()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, {alias.name for alias in node.names}))
    return found


def _files(part: str) -> list[Path]:
    return [PACKAGE / part] if part.endswith(".py") else sorted((PACKAGE / part).rglob("*.py"))


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(f"{prefix}.")


LIBRARY_FILES = sorted(p for part in LIBRARY for p in _files(part))
APPLICATION_FILES = sorted(
    p for p in PACKAGE.rglob("*.py") if any(_within(_module(p), app) for app in APPLICATION)
)


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_module_imports_no_application_code(path):
    for module, names in _imports(path):
        assert not any(_within(module, app) for app in APPLICATION), (path, module)
        if module.startswith("transformers"):
            assert not names & TRAINER_NAMES and "trainer" not in module, (path, module, names)


def test_the_library_is_not_empty():
    assert len(LIBRARY_FILES) > 30 and {p.name for p in LIBRARY_FILES} >= {"distributed.py", "corpus.py"}


@pytest.mark.parametrize("path", sorted((PACKAGE / "synthetic").rglob("*.py")), ids=lambda p: p.name)
def test_the_synthetic_benchmark_imports_only_itself_and_the_data_library(path):
    for module, _ in _imports(path):
        if module.startswith("fgclip"):
            assert module.startswith(("fgclip.synthetic", "fgclip.data")), (path, module)


@pytest.mark.parametrize("path", sorted((PACKAGE / "model").rglob("*.py")), ids=lambda p: p.name)
def test_the_model_imports_no_loss_code(path):
    """The objective reads the model's features and temperatures; the model never reads the loss table."""
    assert not any(_within(module, "fgclip.losses") for module, _ in _imports(path)), path


def _layer(module: str) -> int | None:
    for rank, layer in enumerate(LAYERS):
        if any(_within(module, prefix) for prefix in layer):
            return rank
    return None  # the library: below every layer


def _upward(module: str, imports) -> list[str]:
    """The fgclip modules `module` imports from a layer above its own."""
    own = _layer(module)
    above = [m for m, _ in imports if m.startswith("fgclip") and _layer(m) is not None and _layer(m) < own]
    return above if own is not None else []


@pytest.mark.parametrize("path", APPLICATION_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_application_imports_point_down(path):
    """commands -> tools -> builders -> checks -> config/training -> library; never back up."""
    assert _upward(_module(path), _imports(path)) == [], path


def _command_of(module: str) -> str | None:
    """The CLI verb a module belongs to (`fgclip.commands.data.show` -> `data`); None for shared helpers."""
    if not _within(module, "fgclip.commands") or module == "fgclip.commands":
        return None
    verb = module.split(".")[2]
    return None if verb.startswith("_") else verb


def _other_commands(module: str, imports) -> list[str]:
    own = _command_of(module)
    found = []
    for imported, names in imports:
        targets = [f"{imported}.{name}" for name in names] if imported == "fgclip.commands" else [imported]
        found += [t for t in targets if _command_of(t) not in (None, own)]
    return found


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "commands").rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_a_command_never_imports_another_command(path):
    assert _other_commands(_module(path), _imports(path)) == [], path


def test_the_layout_rules_catch_a_wrong_arrow(tmp_path):
    """The rules above on a planted file: an upward import and a command importing another are found."""
    planted = tmp_path / "planted.py"
    planted.write_text(
        "from fgclip.commands import demo, _errors\nfrom fgclip.commands.data import show\n"
        "from fgclip.tools.check import check_manifests\nfrom fgclip.checks import probe_clips\n"
    )
    imports = _imports(planted)
    assert _upward("fgclip.builders", imports) == [
        "fgclip.commands",
        "fgclip.commands.data",
        "fgclip.tools.check",
    ]
    assert _other_commands("fgclip.commands.data.sources", imports) == ["fgclip.commands.demo"]
    assert _other_commands("fgclip.commands.eval", imports) == [
        "fgclip.commands.demo",
        "fgclip.commands.data",
    ]
