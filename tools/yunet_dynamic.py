"""Make the bundled YuNet model accept any input size under ONNX Runtime.

YuNet (``face_detection_yunet_2023mar.onnx``, OpenCV model zoo) is fully convolutional, but its
ONNX file declares a fixed 1 x 3 x 640 x 640 input, which ONNX Runtime enforces. This rewrites
only the declared shapes: the input becomes 1 x 3 x ``height`` x ``width`` and every output's
anchor count symbolic, and the intermediate shapes recorded for 640 x 640 are dropped. Nodes, weights and opset are unchanged (checked: the rewritten graph's
initializers are byte-identical to the source's). The result is what emod bundles in
``emod/vision/yunet/``; its manifest records both SHA-256s.

    python tools/yunet_dynamic.py ../shared/models/face_detection_yunet_2023mar.onnx emod/vision/yunet/

Needs the ``onnx`` package (``pip install -e .[tools]``). Exit 2 when the input is not this
YuNet (unexpected inputs or outputs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from emod.vision import yunet_decode
from emod.cli.argtypes import plain

OUT_NAME = "face_detection_yunet_2023mar_anysize.onnx"


def make_dynamic(src: Path, dst: Path) -> dict:
    """Write SRC with symbolic input and output shapes to DST; return the manifest's provenance fields."""
    import onnx

    model = onnx.load(str(src))
    g = model.graph
    if len(g.input) != 1 or sorted(o.name for o in g.output) != sorted(yunet_decode.OUTPUTS):
        raise ValueError(f"{src}: not YuNet 2023mar (inputs {[i.name for i in g.input]}, outputs {[o.name for o in g.output]})")
    before = {t.name: t.SerializeToString() for t in g.initializer}
    dims = g.input[0].type.tensor_type.shape.dim
    for d, name in zip(dims[2:], ("height", "width")):
        d.Clear()
        d.dim_param = name
    for o in g.output:
        d = o.type.tensor_type.shape.dim[1]
        d.Clear()
        d.dim_param = f"anchors_{o.name.split('_')[1]}"
    del g.value_info[:]  # intermediate shapes recorded for 640 x 640 (shape hints only; ONNX Runtime infers its own)
    onnx.checker.check_model(model)
    assert before == {t.name: t.SerializeToString() for t in model.graph.initializer}
    dst.write_bytes(model.SerializeToString())
    return {"derived_from": {"file": src.name, "sha256": hashlib.sha256(src.read_bytes()).hexdigest()},
            "sha256": hashlib.sha256(dst.read_bytes()).hexdigest(), "bytes": dst.stat().st_size, "file": dst.name}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=plain(__doc__.split("\n\n")[0]))
    p.add_argument("src", type=Path, help="YuNet 2023mar ONNX file (e.g. ../shared/models/face_detection_yunet_2023mar.onnx)")
    p.add_argument("out_dir", type=Path, help=f"directory to write {OUT_NAME} into; a manifest.json there is updated")
    a = p.parse_args(argv)
    try:
        info = make_dynamic(a.src, a.out_dir / OUT_NAME)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    manifest = a.out_dir / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        m.update(info)
        manifest.write_text(json.dumps(m, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
