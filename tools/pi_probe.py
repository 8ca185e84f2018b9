"""Classify the faces of ``faces.npy`` with emod's own Classifier; write what ``tools/pi_check.py`` compares across CPUs.

    python tools/pi_probe.py FACES.npy OUT.npz [--models quant full]

Writes, per model that loads: ``<model>_probs`` (N, 7) float32 and ``<model>_tensor`` (the
preprocessed input, float32), plus ``versions`` (a JSON string) and ``<model>_error`` for a
model that does not load. Run by pi-check in the emulated arm64 root and on this machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from emod.cli.argtypes import plain

    p = argparse.ArgumentParser(description=plain(__doc__.splitlines()[0]))
    p.add_argument("faces")
    p.add_argument("out")
    p.add_argument("--models", nargs="+", default=["quant"])
    args = p.parse_args(argv)
    import cv2
    import onnxruntime

    from emod.models.classifier import load

    faces = np.load(args.faces)
    out: dict = {}
    versions = {"machine": platform.machine(), "python": platform.python_version(), "numpy": np.__version__,
                "opencv": cv2.__version__, "onnxruntime": onnxruntime.__version__}
    for name in args.models:
        try:
            clf = load(name, 1)
        except Exception as e:  # torch missing for `full`, say
            out[f"{name}_error"] = np.array(f"{type(e).__name__}: {e}")
            continue
        out[f"{name}_tensor"] = clf.prep(list(faces))
        out[f"{name}_probs"] = np.concatenate([clf.classify(list(faces[i:i + 100])) for i in range(0, len(faces), 100)])
        if name == "full":
            import torch

            versions["torch"] = torch.__version__
    out["versions"] = np.array(json.dumps(versions))
    np.savez(args.out, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
