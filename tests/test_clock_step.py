"""Issue 28 kind 8 (field case 09): windows over "the last N seconds" age on a monotonic clock, so an NTP step of the wall
clock (a Pi has no RTC) neither freezes nor empties them. The mqtt dominant-emotion window is tested in test_mqtt.py; these
are its siblings: the web page's face-time timeline and a track's duration."""

from __future__ import annotations

import asyncio

import numpy as np

from emod.viewer.hubs import BUCKET_S, WINDOW_S, EmotionHub


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_the_web_timeline_ages_on_the_monotonic_clock_when_the_wall_clock_steps_back() -> None:
    mono, wall = Clock(5000.0), Clock(1_765_000_000.0)
    loop = asyncio.new_event_loop()
    try:
        hub = EmotionHub(loop, clock=mono, wall=wall)
        for _ in range(100):  # 10 s of a happy face
            mono.t += 0.1
            wall.t += 0.1
            hub._account({"t_wall": wall.t, "faces": [{"track": 1, "label": "happy"}]})
        wall.t -= 3600  # NTP steps the wall clock back an hour
        for _ in range(100):  # 10 s of a sad face, the messages stamped an hour earlier
            mono.t += 0.1
            wall.t += 0.1
            hub._account({"t_wall": wall.t, "faces": [{"track": 2, "label": "sad"}]})
        tl = hub.timeline()
        assert abs(tl["face_s"]["happy"] - 10.0) < 0.2 and abs(tl["face_s"]["sad"] - 10.0) < 0.2, tl["face_s"]
        ts = [b["t"] for b in tl["buckets"]]
        assert ts == sorted(ts) and wall.t - WINDOW_S - 2 * BUCKET_S <= ts[0] and ts[-1] <= wall.t + 0.01  # stamped in today's wall time
        mono.t += WINDOW_S + 2 * BUCKET_S  # nobody for the whole window: empty, whatever the wall clock says
        assert hub.timeline()["buckets"] == []
    finally:
        loop.close()


def test_a_track_duration_is_measured_on_the_tracker_clock_not_the_wall_clock() -> None:
    from emod.vision.emotions import EmotionStream
    from emod.vision.track import FaceTracker

    stream = EmotionStream(FaceTracker(iou_threshold=0.3, max_age=0.5))
    probs = np.eye(7, dtype=np.float32)[3]
    t, wall = 100.0, 1_765_000_000.0
    for i in range(30):  # 3 s of one face; the wall clock steps back an hour in the middle
        t += 0.1
        wall += 0.1 - (3600 if i == 15 else 0)
        stream.update([((10, 10, 50, 50), probs)], t, wall, i, "m")
    ended = stream.finish()
    assert len(ended) == 1 and abs(ended[0]["duration_s"] - 2.9) < 0.01, ended
