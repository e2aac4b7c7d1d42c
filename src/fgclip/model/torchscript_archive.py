"""Read the parameters and buffers of a TorchScript archive (`torch.jit.save`) without running any of it.

`torch.jit.load` compiles the archive's `code/` and calls each scripted class's `__setstate__`, so a crafted
`.pt` runs code of its author's choosing. Here nothing from the archive is executed:

- `<root>/data.pkl` is unpickled by `_RestrictedUnpickler`, whose `find_class` resolves only the globals a
  tensor needs (`torch._utils._rebuild_tensor_v2` / `_rebuild_parameter`, `collections.OrderedDict`, the
  typed-storage tags such as `torch.HalfStorage`, the list/type-tag helpers of `torch.jit._pickle`), each
  mapped to a local function written here; every `__torch__.*` class becomes an inert `_ScriptObject` that
  only records its pickled state. Any other global is refused.
- Storages are read as raw bytes from `<root>/data/<key>` (persistent ids `('storage', type, key, location,
  numel)`, the zip layout of `torch.serialization`), always onto the CPU.
- Which attributes of a module are parameters or buffers is read from the `__parameters__ = [...]` and
  `__buffers__ = [...]` lines of the class's source under `<root>/code/` as text (the source is never
  compiled), so the result has exactly the keys of `torch.jit.load(path).state_dict()`. Tensors that are
  neither (plain attributes) are left out, as TorchScript's `state_dict()` leaves them out; traced
  constants live in `constants.pkl`, which holds no parameters and is not read.

A module whose state was written by its own `__getstate__` (a tuple only its `__setstate__` can interpret)
cannot be named without running that code, so such an archive is refused.
"""

from __future__ import annotations

import ast
import collections
import io
import pickle
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import torch

from fgclip.model.errors import CheckpointError

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
_DECLARATION = re.compile(r"^\s+(__parameters__|__buffers__)\s*=\s*(\[.*\])\s*$")


@dataclass(frozen=True)
class _StorageTag:
    """What `torch.FloatStorage` etc. unpickle to: only the dtype it names."""

    dtype: torch.dtype


class _ScriptObject:
    """Stand-in for a `__torch__.*` class: records what the pickle hands it and runs nothing."""

    qualified_name = "__torch__"

    def __init__(self, *args) -> None:
        self.args = args
        self.state = None

    def __setstate__(self, state) -> None:
        self.state = state


def _rebuild_tensor(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    """`torch._utils._rebuild_tensor_v2` for plain CPU tensors; hooks and metadata are refused, not applied."""
    if backward_hooks or metadata:
        raise pickle.UnpicklingError("a tensor with backward hooks or metadata (these are code or objects)")
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError(f"a tensor over a {type(storage).__name__}, not a storage")
    dtype = storage.dtype
    tensor = torch.empty((0,), dtype=dtype)
    tensor.set_(storage.untyped_storage(), storage_offset, tuple(size), tuple(stride))
    return tensor


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_):
    if backward_hooks:
        raise pickle.UnpicklingError("a parameter with backward hooks (these are code)")
    return data


def _restore_type_tag(value, _type_string):
    return value


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch.jit._pickle", "restore_type_tag"): _restore_type_tag,
    **{("torch.jit._pickle", f"build_{kind}list"): list for kind in ("int", "double", "bool", "tensor")},
    **{("torch", name): _StorageTag(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive, self._root = archive, root
        self._storages: dict[str, torch.Tensor] = {}
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            return self._script_class(f"{module}.{name}")
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"global {module}.{name} is not a tensor-rebuild function")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"persistent id {pid!r} is not a storage reference")
        _, tag, key, _location, numel = pid  # the location is ignored: everything is read onto the CPU
        if not isinstance(tag, _StorageTag):
            raise pickle.UnpicklingError(f"storage of unknown type {tag!r}")
        if key not in self._storages:  # tensors sharing a storage share it here too
            self._storages[key] = self._read_storage(str(key), tag.dtype, numel)
        return self._storages[key]

    def _read_storage(self, key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        name = f"{self._root}/data/{key}"
        try:
            raw = bytearray(self._archive.read(name))
        except KeyError as error:
            raise pickle.UnpicklingError(f"storage {name} is missing from the archive") from error
        itemsize = torch.empty((), dtype=dtype).element_size()
        if len(raw) != numel * itemsize:
            raise pickle.UnpicklingError(f"storage {name}: {len(raw)} bytes, expected {numel} x {itemsize}")
        if not raw:
            return torch.empty((0,), dtype=dtype)
        return torch.frombuffer(raw, dtype=dtype)  # (numel,), owns a private copy of the bytes

    def _script_class(self, qualified_name: str) -> type:
        if qualified_name not in self._classes:
            self._classes[qualified_name] = type(
                "ScriptObject", (_ScriptObject,), {"qualified_name": qualified_name}
            )
        return self._classes[qualified_name]


@dataclass
class _Declarations:
    """`__parameters__` / `__buffers__` of each scripted module class, read from `code/` as text."""

    archive: zipfile.ZipFile
    root: str
    cache: dict[str, tuple[list[str], list[str]] | None] = field(default_factory=dict)

    def of(self, qualified_name: str) -> tuple[list[str], list[str]] | None:
        """(parameter names, buffer names), or None for a class that is not a module."""
        if qualified_name not in self.cache:
            self.cache[qualified_name] = self._read(qualified_name)
        return self.cache[qualified_name]

    def _read(self, qualified_name: str) -> tuple[list[str], list[str]] | None:
        module, _, name = qualified_name.rpartition(".")
        source_name = f"{self.root}/code/{module.replace('.', '/')}.py"
        try:
            source = self.archive.read(source_name).decode("utf-8")
        except KeyError:
            return None
        declared: dict[str, list[str]] = {}
        inside = False
        for line in source.splitlines():
            if line.startswith("class "):
                inside = re.match(rf"class {re.escape(name)}\b", line) is not None
            elif inside and (match := _DECLARATION.match(line)):
                declared[match.group(1)] = ast.literal_eval(match.group(2))  # a list of strings, not code
        if "__parameters__" not in declared:
            return None
        return declared["__parameters__"], declared.get("__buffers__", [])


def is_torchscript_archive(path: Path) -> bool:
    """torch.jit.save archives hold `<name>/constants.pkl` (and `code/`); torch.save files do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1] == "constants.pkl" for name in archive.namelist())


def read_torchscript_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The `state_dict()` of a TorchScript archive, on the CPU, read without running any archive code."""
    with zipfile.ZipFile(path) as archive:
        root = _archive_root(archive, path)
        _check_byteorder(archive, root, path)
        unpickler = _RestrictedUnpickler(archive.read(f"{root}/data.pkl"), archive, root)
        try:
            module = unpickler.load()
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError) as error:
            raise CheckpointError(
                f"{path}: TorchScript archive refused: {error}. fgclip reads only tensors from these archives "
                "and never runs their code"
            ) from error
        declarations = _Declarations(archive, root)
        if not isinstance(module, _ScriptObject) or declarations.of(module.qualified_name) is None:
            raise CheckpointError(
                f"{path}: the TorchScript archive's data.pkl does not hold a scripted module"
            )
        state: dict[str, torch.Tensor] = {}
        _collect(module, "", declarations, state, path)
    return state


def _archive_root(archive: zipfile.ZipFile, path: Path) -> str:
    roots = {
        str(PurePosixPath(name).parent)
        for name in archive.namelist()
        if PurePosixPath(name).name == "data.pkl"
    }
    roots = {root for root in roots if root != "." and "/" not in root}
    if len(roots) != 1:
        raise CheckpointError(
            f"{path}: expected one <name>/data.pkl in the TorchScript archive, found {sorted(roots)}"
        )
    return roots.pop()


def _check_byteorder(archive: zipfile.ZipFile, root: str, path: Path) -> None:
    """Storages are raw bytes in the writer's byte order (`<root>/byteorder`; absent in old archives)."""
    try:
        order = archive.read(f"{root}/byteorder").decode().strip()
    except KeyError:
        return
    if order != sys.byteorder:
        raise CheckpointError(
            f"{path}: tensors stored {order}-endian; this machine is {sys.byteorder}-endian"
        )


def _collect(module: _ScriptObject, prefix: str, declarations: _Declarations, out: dict, path: Path) -> None:
    """Parameters, then buffers, then submodules (in slot order): the order of `Module.state_dict()`."""
    if not isinstance(module.state, dict):
        raise CheckpointError(
            f"{path}: {prefix or '<root>'} ({module.qualified_name}) stores its state through its own "
            "__getstate__/__setstate__, which only the archive's code can read; fgclip does not run archive "
            "code. Export the weights as a state dict (torch.save(model.state_dict())) or safetensors instead"
        )
    parameters, buffers = declarations.of(module.qualified_name)
    for name in (*parameters, *buffers):
        value = module.state.get(name)
        if value is None:  # an absent optional parameter (bias=False): not in state_dict() either
            continue
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: {prefix}{name} is declared a tensor but holds {type(value).__name__}"
            )
        out[prefix + name] = value
    for name, value in module.state.items():
        if isinstance(value, _ScriptObject) and declarations.of(value.qualified_name) is not None:
            _collect(value, f"{prefix}{name}.", declarations, out, path)
