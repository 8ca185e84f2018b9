#!/usr/bin/env python3
"""Turn a trained Hugging Face model directory into a registry model (the ``full`` model emod ships).

Copies ``config.json`` and ``model.safetensors`` from ``tools/train.py``'s ``OUT/model``
into the registry directory, exports their fp32 ONNX twin ``model.onnx`` (``tools/export_onnx.py``:
the same probabilities within 1e-5, served by ONNX Runtime where PyTorch is not installed), and
writes its ``manifest.json`` (SHA-256 of each file, label
order, input size and normalisation from the training run's preprocessor config). The
metrics come afterwards from ``tools/evaluate.py --write-manifest``:

    python tools/package.py runs/full/model emod/models/zoo/full
    python tools/evaluate.py --model full --split private --write-manifest

``--tta hflip`` makes the classifier average each face with its mirror image (twice the
inference work). The directory is written beside the target and swapped in, so a failure
leaves the old model as it was. Exit status 2 for an unusable input directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emod.cli.argtypes import plain  # noqa: E402

from emod.labels import LABELS  # noqa: E402
from emod.models import registry  # noqa: E402
from emod.training.build import model_meta  # noqa: E402
from emod.training.export import add_onnx  # noqa: E402

FILES = ("config.json", "model.safetensors")


def package(src: Path, dst: Path, name: str, tta: str | None = None, description: str | None = None) -> dict:
    missing = [f for f in (*FILES, "preprocessor_config.json") if not (src / f).is_file()]
    if missing:
        raise ValueError(f"{src} is not a tools/train.py model directory: no {', '.join(missing)}")
    cfg = json.loads((src / "config.json").read_text())
    labels = [cfg.get("id2label", {}).get(str(i)) for i in range(len(LABELS))]
    if labels != list(LABELS) or cfg.get("num_labels", len(cfg.get("id2label", {}))) != len(LABELS):
        raise ValueError(f"{src / 'config.json'}: labels {labels} are not emod's {list(LABELS)}")
    meta = model_meta(src)  # its preprocessor_config.json: input size, normalisation, labels trained on
    from emod.models.mobilenet_v2 import MobileNetV2

    MobileNetV2.from_dir(src)  # the daemon's loader must accept it before anything is replaced
    tmp = dst.with_name(dst.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in FILES:
        shutil.copy(src / f, tmp / f)
    width = cfg.get("depth_multiplier", 1.0)
    desc = description or (f"MobileNetV2 {float(width)!r}, {cfg.get('num_channels', 3)}-channel {meta['input_size']} px, fp32 "
                           "(trained with transformers, served with PyTorch)")
    manifest = registry.write_manifest(tmp, name, "hf-safetensors", meta["input_size"], meta["emod_preprocess"],
                                       description=desc, extra={"trained_on": meta["trained_on"],
                                                                **({"tta": tta} if tta else {})})
    manifest, _ = add_onnx(tmp)  # the fp32 ONNX twin: serves without PyTorch (the Pi install, make run)
    old = dst.with_name(dst.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        os.replace(dst, old)
    os.replace(tmp, dst)
    shutil.rmtree(old, ignore_errors=True)
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=plain(__doc__.split("\n\n")[0]), epilog=plain(__doc__.split("\n\n", 1)[1]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="tools/train.py OUT/model directory")
    p.add_argument("out", type=Path, help="registry model directory to write, e.g. emod/models/zoo/full")
    p.add_argument("--name", help="model name in the manifest (default: the OUT folder name)")
    p.add_argument("--tta", choices=["hflip"], help="test-time augmentation the classifier applies")
    p.add_argument("--description")
    args = p.parse_args(argv)
    try:
        m = package(args.model, args.out, args.name or args.out.name, args.tta, args.description)
    except (ValueError, OSError, ArithmeticError) as e:
        print(f"package: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({m['name']}: {', '.join(f'{k} {v[:12]}' for k, v in m['files'].items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
