#!/usr/bin/env python3
"""Benchmark emotion models against the prototype's per-face path, in one process, on the same faces.

    python tools/bench.py                                   # full and quant from the registry
    python tools/bench.py --models full quant --n 200 --threads 2 --json runs/bench.json --plot runs/bench.png
    EMOD_MODELS_DIR=/tmp/devmodels python tools/bench.py --models devfull devquant --n 50

For every registry model (name or model directory) and a "seed" baseline, on the same
seeded sample of ``--n`` PrivateTest faces:

* ``latency_ms`` (median, p90; batch 1, after warm-up): one 48x48 face in, probabilities
  out, preprocessing included (the daemon's ``Classifier.classify([face])``);
  ``model_latency_ms``: the runtime's forward alone on the prepared tensor;
* ``size_bytes``: the model's files (those its manifest lists);
* ``macs`` per image: ONNX files counted from the graph (Conv/Gemm/MatMul and their
  integer/QLinear forms; QDQ int8 weights followed back through ``DequantizeLinear``;
  shapes from ``onnx.shape_inference`` at batch 1), PyTorch models by forward hooks on
  Conv/Linear. Bias adds, BatchNorm and activations are not counted.

The seed baseline is the prototype's per-face path: a PIL RGB image through the Hugging
Face ``MobileNetV2ImageProcessor`` (resize 224, centre crop 224, rescale, normalise;
without torchvision transformers 5 resolves it to ``MobileNetV2ImageProcessorPil``, which
is then constructed directly; the JSON names the class) and an eager fp32
``MobileNetV2ForImageClassification`` at 224x224x3 with 7 labels, built from a config
(random weights: latency, size and MACs do not depend on them).

Threads: torch (``torch.set_num_threads``) and ONNX Runtime (``intra_op_num_threads``)
both get ``--threads``. On a 2-core machine torch and ORT in one process slow each other:
after a forward torch's OpenMP workers keep spinning for a while, and ORT's would too
(emod's ORT sessions disable it: ``session.intra_op.allow_spinning=0``). So models are
never interleaved call by call: the faces are split into ``--rounds`` chunks and, round
by round, each model times a whole chunk after a few untimed calls (``--warmup`` first,
at most 3 later), spreading slow drifts of machine load over all models. The load
average is recorded: numbers taken while something else (training) runs are noisy.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emod.cli.argtypes import plain  # noqa: E402

import numpy as np

from emod.labels import LABELS

SEED = "seed"


def torch_macs(model, example) -> int:
    """Multiply-accumulates per sample of one forward of ``model`` on ``example``, from Conv/Linear hooks."""
    import torch
    from torch import nn

    total = 0
    batch = int(example.shape[0])

    def hook(mod, inputs, out):
        nonlocal total
        per_out = out.numel() // batch
        if isinstance(mod, nn.Linear):
            total += per_out * mod.in_features
        else:  # forward (not transposed) convolution: each output sums Cin/groups x kernel products
            total += per_out * (mod.in_channels // mod.groups) * int(np.prod(mod.kernel_size))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Linear) or (isinstance(m, nn.modules.conv._ConvNd) and not m.transposed)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return int(total)


# MACs = output elements x reduction length; op -> input index of the weight (conv) or of operand B (matmul)
_CONV_W = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}
_MATMUL_B = {"MatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3, "Gemm": 1}
_SAME_SHAPE = {"DequantizeLinear", "QuantizeLinear", "Identity", "Cast"}


def onnx_macs(model_or_path) -> int:
    """Multiply-accumulates of one image through an ONNX graph (symbolic batch dimensions fixed to 1)."""
    import onnx
    from onnx import shape_inference

    if isinstance(model_or_path, onnx.ModelProto):
        m = onnx.ModelProto()
        m.CopyFrom(model_or_path)  # the caller's graph stays untouched
    else:
        m = onnx.load(str(model_or_path))
    g = m.graph
    inits = {t.name: list(t.dims) for t in g.initializer}
    for vi in list(g.input) + list(g.output):
        if vi.name in inits:
            continue
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = 1
    del g.value_info[:]  # stale symbolic shapes would be merged back in
    m = shape_inference.infer_shapes(m)
    g = m.graph
    shapes: dict[str, list | None] = dict(inits)
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.name in shapes:
            continue
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims] if vi.type.tensor_type.HasField("shape") else None
    producer = {o: n for n in g.node for o in n.output}

    def shape(name: str):
        """Fully known shape of a tensor, following QDQ/identity chains back to an initializer; else None."""
        s = shapes.get(name)
        if s is not None and all(d is not None for d in s):
            return s
        n = producer.get(name)
        return shape(n.input[0]) if n is not None and n.op_type in _SAME_SHAPE else None

    total = 0
    for n in g.node:
        if n.op_type not in _CONV_W and n.op_type not in _MATMUL_B:
            continue
        out = shape(n.output[0])
        if n.op_type in _CONV_W:  # weight (Cout, Cin/groups, k...): each output sums Cin/groups x kernel products
            w = shape(n.input[_CONV_W[n.op_type]])
            k = int(np.prod(w[1:])) if w else None
        elif n.op_type == "Gemm":
            a, b, t = shape(n.input[0]), shape(n.input[1]), {x.name: x.i for x in n.attribute}
            k = (a[0] if t.get("transA") else a[1]) if a else ((b[1] if t.get("transB") else b[0]) if b else None)
        else:
            a, b = shape(n.input[0]), shape(n.input[_MATMUL_B[n.op_type]])
            k = a[-1] if a else (b[-2] if b and len(b) >= 2 else None)
        if out is None or k is None:
            raise ValueError(f"ONNX graph: cannot infer the shapes of {n.op_type} node {n.name!r}")
        total += int(np.prod(out)) * int(k)
    return int(total)


def image_processor():
    """The prototype's Hugging Face processor, built locally: (processor, class name)."""
    import transformers

    kwargs = dict(do_resize=True, size={"shortest_edge": 224}, do_center_crop=True, crop_size={"height": 224, "width": 224},
                  do_rescale=True, do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, "MobileNetV2ImageProcessorPil"):
        cls = transformers.MobileNetV2ImageProcessorPil  # what MobileNetV2ImageProcessor falls back to anyway
    else:
        cls = transformers.MobileNetV2ImageProcessor
    proc = cls(**kwargs)
    return proc, type(proc).__name__


def seed_subject(tmp: Path) -> dict:
    """The prototype's per-face path: PIL RGB -> HF image processor -> eager fp32 MobileNetV2 224x224x3."""
    import torch
    from PIL import Image
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    id2label = dict(enumerate(LABELS))
    cfg = MobileNetV2Config(num_channels=3, image_size=224, num_labels=len(LABELS), id2label=id2label,
                            label2id={v: k for k, v in id2label.items()})
    model = MobileNetV2ForImageClassification(cfg).eval()
    proc, proc_name = image_processor()
    model.save_pretrained(str(tmp / SEED), safe_serialization=True)
    size = sum(p.stat().st_size for p in (tmp / SEED).iterdir() if p.is_file())

    def prepare(face):
        return proc(images=Image.fromarray(face).convert("RGB"), return_tensors="pt")["pixel_values"]

    def forward(px):
        with torch.no_grad():
            return model(pixel_values=px).logits.softmax(-1)

    return {"name": SEED, "format": "hf-safetensors (eager torch, HF image processor)", "input_size": 224, "channels": 3,
            "size_bytes": size, "macs": torch_macs(model, torch.zeros(1, 3, 224, 224)), "processor": proc_name,
            "end_to_end": lambda face: forward(prepare(face)), "prepare": prepare, "forward": forward}


def shown(path: Path) -> str:
    """A model directory as the report names it: relative to the checkout when inside it, under
    ``$EMOD_MODELS_DIR`` when there (the same on every machine), else absolute."""
    path = Path(path).resolve()
    bases = [(REPO, "")] + ([(Path(os.environ["EMOD_MODELS_DIR"]).resolve(), "$EMOD_MODELS_DIR/")] if os.environ.get("EMOD_MODELS_DIR") else [])
    for base, prefix in bases:
        try:
            return prefix + str(path.relative_to(base))
        except ValueError:
            pass
    return str(path)


def registry_subject(name_or_dir: str, threads: int) -> dict:
    """A registry model (name or directory) as the daemon runs it."""
    from emod.models.classifier import load

    clf = load(name_or_dir, threads=threads)
    info = clf.info
    size = sum((info.path / f).stat().st_size for f in info.manifest["files"])
    if info.format == "onnx":
        onnx_file = next(f for f in info.manifest["files"] if f.endswith(".onnx"))
        macs = onnx_macs(info.path / onnx_file)
    else:
        import torch

        macs = torch_macs(clf.runtime.model, torch.zeros(1, clf.prep.channels, info.input_size, info.input_size))
    return {"name": clf.name, "format": info.format, "input_size": info.input_size, "channels": clf.prep.channels,
            "size_bytes": size, "macs": macs, "path": shown(info.path),
            "end_to_end": lambda face: clf.classify([face]), "prepare": lambda face: clf.prep([face]),
            "forward": clf.runtime.logits}


def time_calls(fn, inputs: list, warmup: int) -> np.ndarray:
    """Milliseconds of ``fn(x)`` for each input, after ``warmup`` untimed calls; GC paused while timing."""
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    gc.collect()
    gc.disable()
    try:
        out = np.empty(len(inputs))
        for i, x in enumerate(inputs):
            t0 = time.perf_counter()
            fn(x)
            out[i] = (time.perf_counter() - t0) * 1000.0
    finally:
        gc.enable()
    return out


def summary(ms: np.ndarray) -> dict:
    med, p90 = np.percentile(ms, [50, 90])
    return {"median": round(float(med), 4), "p90": round(float(p90), 4), "mean": round(float(ms.mean()), 4), "n": int(len(ms))}


def ratios(results: dict, order: list[str]) -> dict:
    """later/earlier for every pair of benchmarked models, and every model / seed."""
    def one(b, a):
        ra, rb = results[a], results[b]
        return {"latency_median": rb["latency_ms"]["median"] / ra["latency_ms"]["median"],
                "model_latency_median": rb["model_latency_ms"]["median"] / ra["model_latency_ms"]["median"],
                "size": rb["size_bytes"] / ra["size_bytes"], "macs": rb["macs"] / ra["macs"] if ra["macs"] else None}

    out = {}
    models = [m for m in order if m != SEED]
    for j, b in enumerate(models):
        for a in models[:j]:
            out[f"{b}/{a}"] = one(b, a)
    for b in models:
        if SEED in results:
            out[f"{b}/{SEED}"] = one(b, SEED)
    return out


def machine(threads: int) -> dict:
    import onnxruntime
    import torch
    import transformers

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "onnxruntime": onnxruntime.__version__, "transformers": transformers.__version__,
            "numpy": np.__version__, "threads": threads}


def plot(results: dict, samples: dict, path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(results)
    fig = Figure(figsize=(1.8 + 1.6 * len(names), 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    ax.boxplot([samples[n] for n in names], showfliers=False)
    ax.set_xticks(range(1, len(names) + 1),
                  labels=[f"{n}\n{results[n]['macs'] / 1e6:.1f} MMAC, {results[n]['size_bytes'] / 1e6:.2f} MB" for n in names])
    for i, n in enumerate(names, 1):  # the median beside its box (boxes are 0.5 wide), clear of the whiskers
        ax.annotate(f"median {results[n]['latency_ms']['median']:.2f} ms", (i + 0.3, results[n]["latency_ms"]["median"]),
                    fontsize=8, va="center", ha="left")
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    ticks = [t * 10.0 ** e for e in range(-2, 4) for t in (1, 2, 5) if lo <= t * 10.0 ** e <= hi]
    ax.set_yticks(ticks, labels=[f"{t:g}" for t in ticks])  # plain numbers at 1-2-5 steps, not powers of ten
    ax.set_yticks([], minor=True)
    ax.set_ylabel("batch-1 latency per face, ms (log)")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["full", "quant"], help="registry model names or model directories (default: full quant)")
    p.add_argument("--n", type=int, default=200, help="timed faces per model (default: 200)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls before timing (default: 10)")
    p.add_argument("--rounds", type=int, default=4, help="split the faces into this many rounds over all models (default: 4)")
    p.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads (default: 2)")
    p.add_argument("--data", type=Path, default=None, help="FER2013 folder or fer2013.csv (default: $EMOD_FER2013 or ../shared/data/fer2013)")
    p.add_argument("--cache", type=Path, default=REPO / ".cache", help="decoded-FER2013 cache directory (default: .cache)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--plot", type=Path, default=None, help="latency box plot PNG")
    args = p.parse_args(argv)
    if args.n < 1 or args.warmup < 0 or args.threads < 1 or args.rounds < 1:
        p.error("--n, --rounds and --threads must be >= 1, --warmup >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' weight-loading bar is noise here
    import torch

    from emod.datasets import fer2013
    from emod.models.registry import ModelError

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    subjects = []
    try:
        for name in args.models:
            subjects.append(registry_subject(name, args.threads))
    except ModelError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    root = args.data if args.data is not None else fer2013.default_root()
    if not root.exists():
        print(f"bench: no FER2013 at {root} (pass --data or set $EMOD_FER2013)", file=sys.stderr)
        return 2
    private = fer2013.load(root, cache_dir=args.cache).subset("private")
    pick = np.sort(np.random.default_rng(0).permutation(len(private))[: args.n])
    faces = [np.ascontiguousarray(private.images[i]) for i in pick]

    with tempfile.TemporaryDirectory() as tmp:
        subjects.append(seed_subject(Path(tmp)))
    keys = []
    for s in subjects:
        keys.append(s["name"] if s["name"] not in keys else f"{s['name']}#{len(keys)}")
    prepared = {k: [s["prepare"](f) for f in faces] for k, s in zip(keys, subjects)}
    e2e, fwd = {k: [] for k in keys}, {k: [] for k in keys}
    for r, idx in enumerate(np.array_split(np.arange(len(faces)), min(args.rounds, len(faces)))):
        warm = args.warmup if r == 0 else min(args.warmup, 3)  # later rounds: just enough to absorb the previous subject's threads
        for k, s in zip(keys, subjects):
            e2e[k].extend(time_calls(s["end_to_end"], [faces[i] for i in idx], warm))
            fwd[k].extend(time_calls(s["forward"], [prepared[k][i] for i in idx], warm))
    results, samples = {}, {}
    for k, s in zip(keys, subjects):
        samples[k] = np.array(e2e[k])
        results[k] = {f: s[f] for f in ("format", "input_size", "channels", "size_bytes", "macs", "path", "processor") if f in s}
        results[k].update(latency_ms=summary(samples[k]), model_latency_ms=summary(np.array(fwd[k])))
    rat = ratios(results, list(results))

    print(f"{len(faces)} PrivateTest faces, batch 1, {args.threads} thread(s), warm-up {args.warmup}, {args.rounds} rounds; load average {os.getloadavg()[0]:.2f}")
    print(f"{'model':<12}{'format':<16}{'input':>6}{'size MB':>9}{'MMACs':>9}{'median ms':>11}{'p90 ms':>9}{'fwd ms':>9}")
    for k, r in results.items():
        print(f"{k:<12}{r['format'][:15]:<16}{r['input_size']:>6}{r['size_bytes'] / 1e6:>9.2f}{r['macs'] / 1e6:>9.1f}"
              f"{r['latency_ms']['median']:>11.3f}{r['latency_ms']['p90']:>9.3f}{r['model_latency_ms']['median']:>9.3f}")
    print("(median/p90: one face in, probabilities out, preprocessing included; fwd: model forward alone, median)")
    for k, r in rat.items():
        macs = f"{r['macs']:.3f}" if r["macs"] is not None else "-"
        print(f"{k:<22} latency x{r['latency_median']:.3f}  fwd x{r['model_latency_median']:.3f}  size x{r['size']:.3f}  MACs x{macs}")

    report = {"faces": len(faces), "split": "private", "warmup": args.warmup, "rounds": args.rounds, "threads": args.threads, "models": results,
              "ratios": rat, "machine": machine(args.threads)}
    if args.plot is not None:
        plot(results, samples, args.plot, f"batch-1 latency, {len(faces)} PrivateTest faces, {args.threads} thread(s)")
        report["plot"] = str(args.plot)
        print(f"wrote {args.plot}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
