"""The model registry: named model directories, each with a ``manifest.json``.

A manifest names the model, its format (``onnx`` or ``hf-safetensors``), every file
with its SHA-256, the label order, the input size, the normalisation, and the
metrics that ``tools/evaluate.py`` measured. Loading verifies every hash before any
byte is parsed and never unpickles. A model name is a short identifier, never a path.

Search order: ``$EMOD_MODELS_DIR`` (if set), ``STATE_DIR/models`` (user models),
then the models shipped in ``emod/models/zoo``. A user model is used only if its
directories and files pass :mod:`emod.dirs`'s ownership and mode checks (else ModelError).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from emod.labels import LABELS

MANIFEST = "manifest.json"
FORMATS = ("onnx", "hf-safetensors")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
ZOO = Path(__file__).resolve().parent / "zoo"


class ModelError(ValueError):
    """A model that cannot be used: unknown, corrupted, or inconsistent. The message says which file and why."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    manifest: dict

    @property
    def format(self) -> str:
        return self.manifest["format"]

    @property
    def input_size(self) -> int:
        return int(self.manifest["input_size"])


def search_path(state_dir: str | os.PathLike | None = None) -> list[Path]:
    paths = []
    if os.environ.get("EMOD_MODELS_DIR"):
        paths.append(Path(os.environ["EMOD_MODELS_DIR"]))
    if state_dir:
        paths.append(Path(state_dir) / "models")
    paths.append(ZOO)
    return paths


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(model_dir: Path) -> dict:
    path = model_dir / MANIFEST
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: missing manifest") from None
    except ValueError as e:
        raise ModelError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(m, dict):
        raise ModelError(f"{path}: manifest is not a JSON object")
    for key in ("name", "format", "files", "labels", "input_size", "preprocess"):
        if key not in m:
            raise ModelError(f"{path}: manifest lacks {key!r}")
    if m["format"] not in FORMATS:
        raise ModelError(f"{path}: unknown format {m['format']!r} (known: {', '.join(FORMATS)})")
    if list(m["labels"]) != list(LABELS):
        raise ModelError(f"{path}: label order {m['labels']} differs from emod's {list(LABELS)}")
    if not isinstance(m["files"], dict) or not m["files"]:
        raise ModelError(f"{path}: 'files' must map file names to SHA-256")
    for name in m["files"]:
        if "/" in name or "\\" in name or name.startswith("."):
            raise ModelError(f"{path}: file name {name!r} must be a plain name inside the model directory")
    return m


def available(state_dir: str | os.PathLike | None = None) -> dict[str, ModelInfo]:
    """Every model found on the search path (earlier directories win), by name. Broken manifests are skipped."""
    found: dict[str, ModelInfo] = {}
    for root in search_path(state_dir):
        if not root.is_dir():
            continue
        for d in sorted(root.iterdir()):
            if d.name in found or not NAME_RE.match(d.name) or not (d / MANIFEST).is_file():
                continue
            try:
                found[d.name] = ModelInfo(d.name, d, read_manifest(d))
            except ModelError:
                continue
    return found


def _check_user_model(d: Path) -> None:
    """Refuse a state-directory model that someone else could have written (see :mod:`emod.dirs`)."""
    from emod import dirs

    try:
        dirs.check_dir(d.parent, "user models directory")
        dirs.check_dir(d, f"model directory of {d.name!r}")
        dirs.check_file(d / MANIFEST, f"manifest of model {d.name!r}")
        for fname in read_manifest(d)["files"]:
            if os.path.lexists(d / fname):
                dirs.check_file(d / fname, f"file of model {d.name!r}")
    except dirs.UnsafePath as e:
        raise ModelError(str(e)) from None


def find(name: str, state_dir: str | os.PathLike | None = None) -> ModelInfo:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ModelError(f"invalid model name {name!r}: use letters, digits, '-', '_' or '.' (available: {', '.join(available(state_dir)) or 'none'})")
    user_root = Path(state_dir) / "models" if state_dir else None
    for root in search_path(state_dir):
        d = root / name
        if (d / MANIFEST).is_file():
            if root == user_root:
                _check_user_model(d)
            return ModelInfo(name, d, read_manifest(d))
    raise ModelError(f"unknown model {name!r} (available: {', '.join(available(state_dir)) or 'none'})")


def verify(info: ModelInfo) -> None:
    """Check every file's SHA-256 against the manifest; raise :class:`ModelError` naming the file."""
    for fname, want in info.manifest["files"].items():
        p = info.path / fname
        if not p.is_file():
            raise ModelError(f"model {info.name!r}: file {p} is missing")
        got = sha256_file(p)
        if got != want:
            raise ModelError(f"model {info.name!r}: file {p} is corrupted or replaced (SHA-256 {got[:12]}…, manifest says {want[:12]}…)")


def write_manifest(model_dir: Path, name: str, fmt: str, input_size: int, preprocess: dict, metrics: dict | None = None,
                   description: str = "", extra: dict | None = None) -> dict:
    """(Re)write ``manifest.json`` for the files in ``model_dir``, hashing each one."""
    files = {p.name: sha256_file(p) for p in sorted(model_dir.iterdir()) if p.is_file() and p.name != MANIFEST}
    m = {"name": name, "format": fmt, "description": description, "files": files, "labels": list(LABELS),
         "input_size": int(input_size), "preprocess": preprocess, "metrics": metrics or {}}
    if extra:
        m.update(extra)
    (model_dir / MANIFEST).write_text(json.dumps(m, indent=2) + "\n")
    return m
