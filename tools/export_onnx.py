#!/usr/bin/env python3
"""Add (or refresh) the fp32 ONNX twin of an hf-safetensors registry model, so it serves without PyTorch.

Exports ``model.onnx`` from the directory's own ``config.json`` + ``model.safetensors`` (the
network the daemon runs with PyTorch, BatchNorm folded), checks that ONNX Runtime gives the same
probabilities as the PyTorch forward on random inputs (largest absolute difference below
``--tolerance``), and rewrites the manifest's file list and SHA-256s, keeping every other key:

    python tools/export_onnx.py emod/models/zoo/full

``tools/package.py`` runs the same step when it packages a training run. Needs PyTorch (``.[full]``).
Exit status 2 for an unusable directory, 1 when the two runtimes disagree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emod.cli.argtypes import plain  # noqa: E402
from emod.training.export import ONNX_NAME, TOLERANCE, add_onnx  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=plain(__doc__.split("\n\n")[0]), epilog=plain(__doc__.split("\n\n", 1)[1]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", type=Path, help="hf-safetensors registry model directory, e.g. emod/models/zoo/full")
    p.add_argument("--tolerance", type=float, default=TOLERANCE, help=f"largest probability difference allowed (default {TOLERANCE:g})")
    args = p.parse_args(argv)
    try:
        m, diff = add_onnx(args.model_dir, args.tolerance)
    except ArithmeticError as e:
        print(f"export_onnx: {e}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:
        print(f"export_onnx: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.model_dir / ONNX_NAME} (SHA-256 {m['files'][ONNX_NAME][:12]}); "
          f"largest probability difference from PyTorch {diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
