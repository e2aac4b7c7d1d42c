"""TorchScript `.pt` archives are read without running their code, and real ones load as `torch.jit.load` does.

The crafted archive's `__setstate__` creates a marker file (`torch.from_file(..., shared=True)` opens it
with O_CREAT) when `torch.jit.load` runs it; the test first shows that it does, then that no fgclip entry
point does.
"""

from __future__ import annotations

import ast
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from test_openai_loading import OpenAICLIP, _assert_matches, _tokens
from torch import nn

from fgclip import load_pretrained
from fgclip.cli import main
from fgclip.model.errors import CheckpointError
from fgclip.model.openai_checkpoint import read_checkpoint_file
from fgclip.model.torchscript_archive import read_torchscript_state_dict

pytestmark = pytest.mark.filterwarnings(
    "ignore::torch.jit.TracerWarning", "ignore:`torch.jit:DeprecationWarning"
)


class Marker(nn.Module):
    """A submodule whose TorchScript `__setstate__` creates the file named in its state."""

    def __init__(self, marker: str):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.marker = marker

    def forward(self, x):
        return x * self.scale

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
        return (self.scale, self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]) -> None:
        created = torch.from_file(state[1], shared=True, size=1, dtype=torch.uint8)  # creates the file
        self.scale = state[0] + created.float() * 0.0  # uses it, so the compiler keeps the call
        self.marker = state[1]
        self.training = state[2]


class Carrier(nn.Module):
    """OpenAI-CLIP key names at the top, so only the crafted submodule makes the archive unsafe."""

    def __init__(self, marker: str):
        super().__init__()
        self.token_embedding = nn.Embedding(8, 64)
        self.payload = Marker(marker)

    def forward(self, x):
        return self.payload(x)


class Mixed(nn.Module):
    """The shapes of state a real archive may hold: fp16, a missing bias, a buffer, a plain tensor
    attribute (not in state_dict()), nested containers, a tied (shared-storage) parameter."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 6, bias=False)
        self.blocks = nn.Sequential(nn.Linear(6, 6), nn.LayerNorm(6), nn.Linear(6, 2))
        self.scale16 = nn.Parameter(torch.randn(5).half())
        self.register_buffer("steps", torch.tensor(7))
        self.mask = torch.full((3, 3), float("-inf")).triu(1)  # an attribute, not a buffer
        self.head = nn.Linear(4, 6, bias=False)
        self.head.weight = self.proj.weight

    def forward(self, x):
        return self.blocks(self.proj(x)) + self.mask.sum() * 0 + self.head(x).sum()


def _jit_state(path: Path) -> dict[str, torch.Tensor]:
    return dict(torch.jit.load(str(path), map_location="cpu").state_dict())


def _assert_same_state(ours: dict, theirs: dict) -> None:
    assert list(ours) == list(theirs)
    for key, tensor in theirs.items():
        assert ours[key].dtype == tensor.dtype, key
        assert torch.equal(ours[key], tensor), key


def test_scripted_module_reads_as_jit_state_dict(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "mixed.pt"
    torch.jit.save(torch.jit.script(Mixed()), str(path))
    ours = read_torchscript_state_dict(path)
    _assert_same_state(ours, _jit_state(path))
    assert "mask" not in ours and "proj.bias" not in ours
    assert ours["proj.weight"].data_ptr() == ours["head.weight"].data_ptr()  # tied weights stay tied


def test_traced_openai_archive_reads_bit_exact_and_loads(tmp_path):
    torch.manual_seed(0)
    reference = OpenAICLIP().eval()
    torch.manual_seed(1)
    pixels, ids = torch.randn(2, 3, 32, 32), _tokens([[5, 9, 12, 7], [30, 4]])
    path = tmp_path / "ViT-tiny-jit.pt"
    torch.jit.save(torch.jit.trace(reference, (pixels, ids), check_trace=False), str(path))
    _assert_same_state(read_torchscript_state_dict(path), _jit_state(path))
    model, report = load_pretrained(path)
    _assert_matches(model, reference, (pixels, ids))
    assert report.source_format == "OpenAI CLIP TorchScript archive"


@pytest.fixture
def crafted(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "MARKER"
    path = tmp_path / "crafted.pt"
    torch.jit.save(torch.jit.script(Carrier(str(marker))), str(path))
    assert not marker.exists()
    return path, marker


def test_crafted_archive_does_run_code_under_jit_load(crafted):
    path, marker = crafted
    torch.jit.load(str(path))
    assert marker.exists()  # the archive is a real attack, so the tests below show something


def test_crafted_archive_runs_nothing_and_is_refused_by_name(crafted, capsys):
    path, marker = crafted
    for read in (read_checkpoint_file, load_pretrained, read_torchscript_state_dict):
        with pytest.raises(CheckpointError, match="__setstate__") as error:
            read(path)
        assert str(path) in str(error.value) and "payload" in str(error.value)
    assert main(["inspect", str(path)]) == 1
    assert f"fgclip inspect: {path}" in capsys.readouterr().err
    assert not marker.exists()


def test_archive_naming_another_global_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    honest = tmp_path / "honest.pt"
    torch.jit.save(torch.jit.script(Mixed()), str(honest))

    class Payload:
        def __reduce__(self):
            import os

            return os.system, (f"touch {marker}",)

    crafted = tmp_path / "global.pt"
    with zipfile.ZipFile(honest) as source, zipfile.ZipFile(crafted, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("/data.pkl"):
                data = pickle.dumps(Payload(), protocol=2)
            target.writestr(item, data)
    with pytest.raises(CheckpointError, match=r"global (posix|os)\.system is not a tensor-rebuild function"):
        read_checkpoint_file(crafted)
    assert not marker.exists()


def test_truncated_storage_is_refused(tmp_path):
    honest = tmp_path / "honest.pt"
    torch.jit.save(torch.jit.script(Mixed()), str(honest))
    cut = tmp_path / "cut.pt"
    with zipfile.ZipFile(honest) as source, zipfile.ZipFile(cut, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            target.writestr(item, data[:-4] if "/data/" in item.filename and len(data) > 8 else data)
    with pytest.raises(
        CheckpointError, match=r"cut\.pt: TorchScript archive refused: storage .* bytes, expected"
    ):
        read_checkpoint_file(cut)


def _unsafe_loads(source: str) -> list[int]:
    """Lines calling `torch.jit.load`, or `torch.load` without `weights_only=True`."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = ast.unparse(node.func)
        safe = any(
            k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in node.keywords
        )
        if name.endswith("jit.load") or (name == "torch.load" and not safe):
            lines.append(node.lineno)
    return lines


def test_no_code_running_load_in_src():
    assert _unsafe_loads("import torch\ntorch.load(p)\ntorch.jit.load(p)\n") == [2, 3]  # the check bites
    src = Path(__file__).resolve().parents[2] / "src"
    found = {str(file): lines for file in src.rglob("*.py") if (lines := _unsafe_loads(file.read_text()))}
    assert found == {}
