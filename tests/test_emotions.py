"""The emotions stream: what EmotionStream builds, what the protocol accepts and rejects, and the per-track events."""

import json

import numpy as np
import pytest

from emod import protocol
from emod.events import TrackEvents, describe, describe_event
from emod.labels import LABEL_INDEX, LABELS
from emod.vision.emotions import EmotionStream, distribution, iso_time
from emod.vision.smooth import EmaHysteresis
from emod.vision.track import FaceTracker

T0 = 1_800_000_000.0


def probs(label: str, p: float = 0.8) -> np.ndarray:
    v = np.full(len(LABELS), (1.0 - p) / (len(LABELS) - 1), np.float32)
    v[LABEL_INDEX[label]] = p
    return v


def stream(max_age: float = 0.5) -> EmotionStream:
    return EmotionStream(FaceTracker(max_age=max_age, smoother=lambda: EmaHysteresis(alpha=0.5, lead_frames=2, margin=0.9)))


def run(s: EmotionStream, frames: list) -> list[dict]:
    """Feed [(t, [(box, label), ...]), ...]; every message goes through encode/decode."""
    out = []
    for i, (t, faces) in enumerate(frames):
        h = s.update([(box, probs(label)) for box, label in faces], t, T0 + t, i, "m")
        out.append(protocol.decode_emotions(protocol.encode_emotions(h)))
    return out


def test_one_face_starts_changes_and_ends_with_shares():
    """A face gets one track id, `started` on its first frame, `changed` once when the smoothed label flips, and an `ended` summary whose time shares follow the labels."""
    box = (100, 100, 80, 80)
    frames = [(i * 0.1, [(box, "happy")]) for i in range(10)] + [(1.0 + i * 0.1, [(box, "sad")]) for i in range(10)]
    frames += [(2.0 + i * 0.1, []) for i in range(10)]
    msgs = run(stream(), frames)
    faces = [f for m in msgs for f in m["faces"]]
    assert {f["track"] for f in faces} == {1}
    assert [f["started"] for f in faces].count(True) == 1 and faces[0]["started"]
    changed = [f for f in faces if f["changed"]]
    assert len(changed) == 1 and changed[0]["label"] == "sad"
    assert faces[0]["label"] == "happy" and faces[-1]["label"] == "sad"
    assert all(abs(sum(f["probs"].values()) - 1) <= 1e-3 and f["confidence"] == f["probs"][f["label"]] for f in faces)
    assert faces[5]["age_s"] == pytest.approx(0.5)
    ended = [e for m in msgs for e in m["ended"]]
    assert len(ended) == 1 and ended[0]["track"] == 1 and ended[0]["frames"] == 20
    assert ended[0]["duration_s"] == pytest.approx(1.9, abs=1e-3) and ended[0]["start"] == pytest.approx(T0, abs=1e-3)
    shares = ended[0]["shares"]
    assert shares["happy"] + shares["sad"] == pytest.approx(1.0, abs=1e-3) and 0.4 < shares["happy"] < 0.6
    assert msgs[0]["time"] == iso_time(T0) and msgs[0]["time"].endswith("Z")


def test_face_seconds_and_tracks_count_for_telemetry():
    """Face-time per smoothed label adds up over faces and frames (two faces for 1 s: 2 face-seconds), and each new track is counted once."""
    s = stream()
    run(s, [(i * 0.1, [((0, 0, 50, 50), "happy"), ((300, 0, 50, 50), "sad")]) for i in range(11)])
    assert s.tracks_seen == 2 and s.faces == 2
    assert s.face_seconds["happy"] == pytest.approx(1.0) and s.face_seconds["sad"] == pytest.approx(1.0)


def test_finish_ends_every_live_track():
    """At the end of a file every live track gets its summary, and a one-frame track's shares come from its frame count."""
    s = stream()
    run(s, [(0.0, [((0, 0, 50, 50), "fear")])])
    done = s.finish()
    assert len(done) == 1 and done[0]["shares"]["fear"] == 1.0 and done[0]["duration_s"] == 0.0 and done[0]["label"] == "fear"


def good_message() -> dict:
    s = stream()
    return s.update([((10, 10, 40, 40), probs("happy"))], 0.0, T0, 7, "quant")


def _with_face(**kw) -> dict:
    h = good_message()
    h["faces"][0].update(kw)
    return h


@pytest.mark.parametrize("header, reason", [
    (_with_face(probs={**distribution(probs("happy")), "happy": 0.9}), "sum"),
    (_with_face(probs={k: v for k, v in distribution(probs("happy")).items() if k != "sad"}), "labels"),
    (_with_face(label="joy"), "label"),
    (_with_face(track=True), "track"),
    (_with_face(confidence=1.5), "confidence"),
    (_with_face(box=[1, 2, 3]), "box"),
    (_with_face(changed=None), "changed"),
    ({**good_message(), "faces": "x"}, "type"),
    ({**good_message(), "ended": [{"track": 1}]}, "ended"),
])
def test_malformed_emotions_are_rejected(header, reason):
    """Each malformed emotions header fails at the sender and at the receiver, naming what is wrong."""
    with pytest.raises(protocol.ProtocolError, match=reason):
        protocol.encode_emotions(header)
    raw = json.dumps({**header, "v": protocol.VERSION}).encode()
    with pytest.raises(protocol.ProtocolError, match=reason):
        protocol.decode_emotions([b"emotions", raw])


def test_nan_never_reaches_the_wire():
    """A NaN anywhere is refused at encode and at decode (the stream is strict JSON)."""
    h = _with_face(age_s=float("nan"))
    with pytest.raises(protocol.ProtocolError):
        protocol.encode_emotions(h)
    raw = json.dumps({**h, "v": 1}).encode()  # Python writes NaN, which json.loads would accept
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_emotions([b"emotions", raw])


def test_track_events_start_change_end():
    """TrackEvents reports a track's start, each label change with the previous label, and its end with the summary."""
    box = (100, 100, 80, 80)
    frames = [(i * 0.1, [(box, "happy")]) for i in range(5)] + [(0.5 + i * 0.1, [(box, "sad")]) for i in range(5)]
    frames += [(1.0 + i * 0.1, []) for i in range(8)]
    ev = TrackEvents()
    events = [e for m in run(stream(), frames) for e in ev.feed(m)]
    assert [e["event"] for e in events] == ["start", "change", "end"]
    assert events[1]["from"] == "happy" and events[1]["label"] == "sad"
    assert "happy" in describe_event(events[0]) and "happy -> sad" in describe_event(events[1]) and "ended after" in describe_event(events[2])
    assert all(json.loads(json.dumps(e, allow_nan=False)) == e for e in events)


def test_a_late_subscriber_sees_a_running_track_not_its_start():
    """Joining after a track began (field case: `track 1 started` for a 321 s old track): the first sight is `seen`, with its age."""
    box = (100, 100, 80, 80)
    frames = [(i * 0.5, [(box, "happy")]) for i in range(12)]
    msgs = run(stream(max_age=1.0), frames)
    ev = TrackEvents()
    events = [e for m in msgs[6:] for e in ev.feed(m)]  # subscribed 3 s in
    assert [e["event"] for e in events] == ["seen"]
    assert events[0]["age_s"] == pytest.approx(3.0)
    line = describe_event(events[0])
    assert "track 1 seen (age 3 s): happy" in line and "started" not in line
    # the same subscriber from the first frame: a start
    assert [e["event"] for m in msgs for e in TrackEvents().feed(m)][:1] == ["start"]


def test_a_reused_track_id_after_a_daemon_restart_is_a_start_not_a_change():
    """Sibling: the daemon restarted and track ids begin at 1 again; the new track 1 (started) is a start, never `happy -> sad`."""
    box = (100, 100, 80, 80)
    ev = TrackEvents()
    first = run(stream(), [(i * 0.1, [(box, "happy")]) for i in range(5)])
    second = run(stream(), [(i * 0.1, [(box, "sad")]) for i in range(5)])  # a fresh stream: ids restart
    events = [e for m in first + second for e in ev.feed(m)]
    assert [e["event"] for e in events] == ["start", "start"]
    assert events[1]["label"] == "sad" and "from" not in events[1]


def test_describe_is_one_readable_line():
    """A message reads as its clock time and `#track label confidence` per face."""
    line = describe(protocol.decode_emotions(protocol.encode_emotions(good_message())))
    assert "#1 happy 0.80" in line and "\n" not in line


def test_tally_turns_display_counters_into_intervals_and_survives_a_restart():
    """The launcher's tally counts increments of the display's cumulative counters, per interval and per minute, and a restarted display (new pid) counts from zero."""
    from emod.launcher.emotion_tally import EmotionTally

    t = EmotionTally()
    t.on_display(10, {"faces": 1, "tracks_seen": 1, "face_s": {"happy": 1.0}}, now=0.0)
    t.on_display(10, {"faces": 1, "tracks_seen": 2, "face_s": {"happy": 3.0, "sad": 1.0}}, now=1.0)
    t.close_interval()
    snap = t.snapshot(now=1.0)
    assert snap["interval"]["face_s"]["happy"] == 3.0 and snap["interval"]["tracks"] == 2
    t.on_display(11, {"faces": 0, "tracks_seen": 1, "face_s": {"sad": 0.5}}, now=2.0)  # restarted: counts whole
    t.close_interval()
    snap = t.snapshot(now=2.0)
    assert snap["interval"]["face_s"]["sad"] == 0.5 and snap["total"]["face_s"] == {**{k: 0.0 for k in LABELS}, "happy": 3.0, "sad": 1.5}
    assert snap["total"]["tracks"] == 3 and snap["faces"] == 0
    assert snap["last_minute"]["shares"]["happy"] == pytest.approx(3 / 4.5, abs=1e-3)
    assert t.snapshot(now=100.0)["last_minute"]["shares"] is None  # a minute later: nothing recent
    t.on_display(11, "garbage")  # a malformed report changes nothing
    assert t.snapshot(now=2.0)["total"]["tracks"] == 3


def test_emod_stats_shows_the_last_minute_of_emotions():
    """emod-stats' readable snapshot has a line with the last minute's shares per label and the faces now."""
    from emod.cli.stats import render

    snap = {"model": "quant", "uptime_s": 5, "source": {"name": "demo"}, "frames": {"captured": 1, "processed": 1, "dropped": 0},
            "processed_fps": 30.0, "faces_per_s": 1.0, "latency_ms": {"p50": 1, "p95": 2}, "inference_ms": {"model": "quant", "p50": 1, "p95": 2},
            "power": None, "energy_per_inference_j": {}, "rejected": {"total": 0}, "total_rss_mb": 1, "stages": {},
            "emotions": {"faces": 2, "last_minute": {"face_s": {"happy": 30.0, "neutral": 10.0}, "tracks": 3}}}
    assert "emotions, last minute: happy 75%, neutral 25% (40 face-s, 3 tracks)   faces now 2" in render(snap)
    # the per-frame time says what it covers (docs/models.md's bench times the classifier alone, per face)
    assert "detect+classify per frame (quant) p50 1 ms  p95 2 ms" in render(snap)
