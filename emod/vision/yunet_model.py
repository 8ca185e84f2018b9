"""The YuNet model file: the bundled copy in ``emod/vision/yunet/`` (SHA-256-checked), or a user's file.

The bundled directory holds the ONNX file, its licence (``LICENSE``, Apache-2.0) and
``manifest.json`` (file name, SHA-256, byte count, source, licence). The bytes are read once,
checked, and handed to OpenCV from memory, so the checked bytes are the ones parsed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from emod.models.registry import ModelError

BUNDLED_DIR = Path(__file__).resolve().parent / "yunet"


class DetectorModelError(ModelError):
    """The face detector's model cannot be used: missing, corrupted or unreadable. The message names the file."""


def bundled_manifest(directory: Path = BUNDLED_DIR) -> dict:
    """The bundled model's manifest (``file``, ``sha256``, ``bytes``, ``source``, ``licence``)."""
    path = Path(directory) / "manifest.json"
    try:
        m = json.loads(path.read_text())
        m["file"], m["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DetectorModelError(f"bundled YuNet manifest {path} is missing or unreadable ({e})") from None
    return m


def load_bytes(path: str = "", directory: Path = BUNDLED_DIR) -> tuple[Path, bytes]:
    """(path, bytes) of the YuNet model: PATH when given (not hash-checked), else the bundled copy in DIRECTORY.

    Raises :class:`DetectorModelError` naming the file when it is missing, or when the bundled copy's
    SHA-256 differs from its manifest.
    """
    if path:
        p = Path(path)
        try:
            return p, p.read_bytes()
        except OSError as e:
            raise DetectorModelError(f"YuNet model {p}: cannot read it ({e.strerror}; see docs/detectors.md)") from None
    m = bundled_manifest(directory)
    p = Path(directory) / m["file"]
    try:
        buf = p.read_bytes()
    except OSError as e:
        raise DetectorModelError(f"bundled YuNet model {p}: cannot read it ({e.strerror})") from None
    got = hashlib.sha256(buf).hexdigest()
    if got != m["sha256"]:
        raise DetectorModelError(f"bundled YuNet model {p} is corrupted or replaced (SHA-256 {got[:12]}…, "
                                 f"manifest says {m['sha256'][:12]}…)")
    return p, buf
