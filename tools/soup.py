#!/usr/bin/env python3
"""Average the weights of several training runs of one architecture into one model (a "uniform soup").

Models fine-tuned from the same starting weights stay in one basin of the loss, so the mean
of their weights is itself a good model, often better than each of them, at the cost of one
(Wortsman et al., "Model soups", ICML 2022). Every floating-point tensor is averaged, BatchNorm
running statistics included; integer tensors (BatchNorm's ``num_batches_tracked``) come from the
first model. The output is a ``tools/train.py`` model directory, so the usual next steps apply:

    python tools/soup.py runs/soup runs/ferplus2/model runs/ferplus3/model
    python tools/evaluate.py --model runs/soup --split public --labels ferplus
    python tools/package.py runs/soup emod/models/zoo/full --tta hflip

The models must share ``config.json`` (architecture, labels) and ``preprocessor_config.json``
(input size, normalisation) and hold the same tensors with the same shapes; otherwise the tool
names the first difference and exits 2 without writing anything. Averaging models from
different starting weights gives a poor model: measure the soup before shipping it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

META = ("config.json", "preprocessor_config.json")
WEIGHTS = "model.safetensors"
IGNORED_CONFIG = ("_name_or_path", "transformers_version")  # bookkeeping, not architecture


def _meta(d: Path) -> dict[str, dict]:
    if not d.is_dir():
        raise ValueError(f"{d}: no such directory")
    missing = [f for f in (*META, WEIGHTS) if not (d / f).is_file()]
    if missing:
        raise ValueError(f"{d} is not a tools/train.py model directory: no {', '.join(missing)}")
    out = {f: json.loads((d / f).read_text()) for f in META}
    for k in IGNORED_CONFIG:
        out["config.json"].pop(k, None)
    return out


def soup(out: Path, models: list[Path]) -> dict:
    """Write the uniform soup of ``models`` (tools/train.py model directories) to ``out``.

    Returns ``{"models": [...], "tensors": N}``. Raises ValueError when the models differ in
    configuration, tensor names or shapes (nothing is written then).
    """
    if len(models) < 2:
        raise ValueError("a soup needs at least two models")
    from safetensors.torch import load_file, save_file  # imports torch: not for --help or a bad argument
    first = _meta(models[0])
    states = [load_file(str(models[0] / WEIGHTS))]
    for m in models[1:]:
        meta = _meta(m)
        for f in META:
            if meta[f] != first[f]:
                keys = sorted(k for k in set(meta[f]) | set(first[f]) if meta[f].get(k) != first[f].get(k))
                raise ValueError(f"{m / f} differs from {models[0] / f} in {', '.join(keys)}")
        sd = load_file(str(m / WEIGHTS))
        if set(sd) != set(states[0]):
            diff = sorted(set(sd) ^ set(states[0]))
            raise ValueError(f"{m / WEIGHTS} holds other tensors than {models[0] / WEIGHTS}: {', '.join(diff[:5])}")
        bad = next((k for k in sd if sd[k].shape != states[0][k].shape), None)
        if bad is not None:
            raise ValueError(f"{m / WEIGHTS}: {bad} is {tuple(sd[bad].shape)}, not {tuple(states[0][bad].shape)}")
        states.append(sd)
    mean = {}
    for k, v in states[0].items():
        mean[k] = (sum(s[k].double() for s in states) / len(states)).to(v.dtype) if v.is_floating_point() else v
    tmp = out.with_name(out.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(mean, str(tmp / WEIGHTS), metadata={"format": "pt"})
    for f in META:
        shutil.copy(models[0] / f, tmp / f)
    info = {"models": [str(m) for m in models], "tensors": len(mean)}
    (tmp / "soup.json").write_text(json.dumps(info, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return info


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from emod.cli.argtypes import plain

    p = argparse.ArgumentParser(description=plain(__doc__.split("\n\n")[0]), epilog=plain(__doc__.split("\n\n", 1)[1]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="model directory to write (tools/train.py OUT/model layout)")
    p.add_argument("models", type=Path, nargs="+", help="two or more tools/train.py OUT/model directories")
    args = p.parse_args(argv)
    try:
        info = soup(args.out, args.models)
    except (ValueError, OSError) as e:
        print(f"soup: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: mean of {len(args.models)} models ({info['tensors']} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
