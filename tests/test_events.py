"""`emod events` beside a real daemon: strict JSON lines, stable track ids, a closed pipe, and a daemon restart."""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
from _fixtures import BIN, HAMILTON, Daemon, clip, short_tmp, tiny_models, wait_for  # noqa: F401

EMOD = str(BIN / "emod")


@pytest.fixture
def singer() -> Path:
    """The hamilton clip of the shared media (one singer in view for seconds at a time)."""
    if not HAMILTON.is_file():
        pytest.skip(f"shared test clip {HAMILTON} is absent")
    return HAMILTON


def _strict(text: str):
    """json.loads that refuses NaN and Infinity."""
    def bad(name):
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=bad)


class Lines:
    """The stdout lines of a child process, read by a thread into a queue."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.q: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.q.put(line)

    def collect(self, seconds: float) -> list[str]:
        out, end = [], time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                out.append(self.q.get(timeout=left))
            except queue.Empty:
                break
        return out


def events(d: Daemon, *args: str) -> subprocess.Popen:
    return subprocess.Popen([EMOD, "events", "--runtime-dir", str(d.rundir), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_events_json_for_10_s_is_strict_and_tracks_are_stable(short_tmp, tiny_models, singer):
    """For 10 s beside `emod run` on the hamilton clip every line is strict JSON, probabilities sum to 1 within 1e-3, and the singer keeps one track id while in view."""
    d = Daemon(short_tmp, tiny_models, singer)
    p = None
    try:
        d.wait_processing()
        p = events(d, "--json")
        lines = Lines(p).collect(10.0)
        assert p.poll() is None, p.stderr.read()
        msgs = [_strict(line) for line in lines]
        assert len(msgs) > 50, f"only {len(msgs)} messages in 10 s"
        seqs = [m["seq"] for m in msgs]
        assert seqs == sorted(seqs) and all(m["model"] == "tiny" and m["time"].endswith("Z") for m in msgs)
        faces = [f for m in msgs for f in m["faces"]]
        assert len(faces) > 20, "no faces seen in the hamilton clip"
        for f in faces:
            assert abs(sum(f["probs"].values()) - 1.0) <= 1e-3 and set(f["probs"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
        # one face in consecutive frames (< 0.2 s apart) at nearly the same place and size: the same track
        pairs = same = 0
        switched = []
        for a, b in zip(msgs, msgs[1:]):
            if len(a["faces"]) == len(b["faces"]) == 1 and b["t_wall"] - a["t_wall"] < 0.2:
                fa, fb = a["faces"][0], b["faces"][0]
                (xa, ya, wa, _), (xb, yb, wb, _) = fa["box"], fb["box"]
                if abs(xa + wa / 2 - xb - wb / 2) + abs(ya + wa / 2 - yb - wb / 2) < wa / 2 and 2 / 3 < wb / wa < 3 / 2:
                    pairs += 1
                    same += fa["track"] == fb["track"]
                    if fa["track"] != fb["track"]:
                        switched.append((a["seq"], fa["track"], fa["box"], b["seq"], fb["track"], fb["box"]))
        assert pairs > 20 and same == pairs, f"{pairs - same} of {pairs} frame pairs switched the track id: {switched}"
        longest = max(f["age_s"] for f in faces)
        assert longest > 1.5, f"no track lived longer than {longest} s"
    finally:
        if p is not None:
            p.kill()
            p.wait()
        d.stop()


def test_closed_pipe_exits_0_and_a_restarted_daemon_is_followed(short_tmp, tiny_models, clip):
    """`emod events --json | head` exits 0 without a traceback, a terminal gets readable lines, and a running `emod events` keeps printing across a daemon restart."""
    d = Daemon(short_tmp, tiny_models, clip)
    p = None
    try:
        d.wait_processing()
        head = subprocess.run(f"'{EMOD}' events --runtime-dir '{d.rundir}' --json | head -n 2; exit ${{PIPESTATUS[0]}}",
                              shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60)
        assert head.returncode == 0 and len(head.stdout.splitlines()) == 2 and "Traceback" not in head.stderr, head.stderr
        # on a terminal: readable lines, not JSON
        master, slave = pty.openpty()
        tty = subprocess.run([EMOD, "events", "--runtime-dir", str(d.rundir), "--count", "3", "--timeout", "20"], stdout=slave,
                             stderr=subprocess.PIPE, timeout=60)
        os.close(slave)
        shown = os.read(master, 65536).decode()
        os.close(master)
        assert tty.returncode == 0 and len(shown.splitlines()) == 3 and "{" not in shown, shown
        assert all(re.match(r"\d\d:\d\d:\d\d\.\d{3}  (no faces|#\d+ \w+ \d\.\d\d)", line) for line in shown.splitlines()), shown
        p = events(d, "--json")
        lines = Lines(p)
        before = lines.collect(2.0)
        assert before, "no messages before the restart"
        assert d.stop() == 0
        d = Daemon(short_tmp, tiny_models, clip)
        d.wait_processing()
        wait_for(lambda: lines.collect(1.0), 40, what="messages from the restarted daemon")
        assert p.poll() is None
    finally:
        if p is not None:
            p.kill()
            p.wait()
        d.stop()
