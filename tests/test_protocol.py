"""The wire protocol: what encode builds, decode accepts, and every malformed shape it rejects."""

import json

import pytest

from emod import protocol
from emod.labels import LABELS


def frame_header(**kw):
    h = {"seq": 1, "t_mono": 1.0, "t_wall": 2.0, "shape": [2, 3, 3], "dtype": "uint8", "source": "x"}
    h.update(kw)
    return h


def test_frame_round_trip():
    """A frame encoded with its pixels decodes to the same header and payload."""
    parts = protocol.encode(b"frame", frame_header(), b"\x01" * 18)
    topic, h, payload = protocol.decode(parts)
    assert topic == b"frame" and h["seq"] == 1 and h["v"] == protocol.VERSION and payload == b"\x01" * 18


def test_result_round_trip_keeps_label_order():
    """A result's probabilities travel in the canonical label order."""
    face = {"box": [1, 2, 3, 4], "score": 0.9, "probs": [0.1] * 6 + [0.4], "label": LABELS[-1]}
    r = {"seq": 5, "t_capture": 1.0, "t_done": 1.01, "model": "m", "detect_ms": 1.0, "classify_ms": 1.0, "faces": [face],
         "frame_shape": [480, 640, 3]}
    _, h, _ = protocol.decode(protocol.encode(b"result", r))
    assert h["faces"][0]["label"] == "neutral" and len(h["faces"][0]["probs"]) == len(LABELS)


@pytest.mark.parametrize("parts, reason", [
    ([b"frame"], "parts"),
    ([b"a", b"b", b"c", b"d"], "parts"),
    ([b"nosuch", b"{}"], "unknown topic"),
    ([b"frame", b"\xff\xfe", b""], "not JSON"),
    ([b"frame", b"[1]", b""], "not a JSON object"),
    ([b"frame", json.dumps({**frame_header(), "v": 99}).encode(), b"x" * 18], "version"),
    ([b"frame", json.dumps({**frame_header(), "v": 1}).encode(), b"x" * 17], "bytes"),
    ([b"frame", json.dumps({**frame_header(shape=[2, 3, 4]), "v": 1}).encode(), b"x" * 24], "channel"),
    ([b"frame", json.dumps({**frame_header(seq="1"), "v": 1}).encode(), b"x" * 18], "type"),
    ([b"power", json.dumps({"v": 1, "t_mono": 0, "backend": "none"}).encode()], "lacks"),
    ([b"request", b" " * (protocol.MAX_HEADER_BYTES + 1)], "exceeds"),
    ([b"result", json.dumps({"v": 1, "seq": 1, "t_capture": 0, "t_done": 0, "model": "m", "detect_ms": 0, "classify_ms": 0,
                             "frame_shape": [1, 1], "faces": [{"box": [1], "score": 1, "probs": [], "label": "x"}]}).encode()], "face"),
    ([b"telemetry", json.dumps({"v": 1, "stage": "s", "pid": 1, "t_mono": 0, "stats": {}}).encode(), b"x"], "payload"),
])
def test_malformed_messages_are_rejected(parts, reason):
    """Each malformed shape raises ProtocolError naming what is wrong."""
    with pytest.raises(protocol.ProtocolError, match=reason):
        protocol.decode(parts)


def test_encode_refuses_a_bad_header():
    """A sender bug fails at the sender, not at every receiver."""
    with pytest.raises(protocol.ProtocolError):
        protocol.encode(b"power", {"t_mono": 0.0, "backend": "none"})
