"""Telemetry history summaries: synthetic files, rotation, truncated lines, and a daemon killed mid-write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from _fixtures import EMOD_STATS, Daemon, base_env, hamilton, short_tmp, tiny_models, wait_for  # noqa: F401
from emod.launcher.history import counter_delta, summarize

T0 = 1_800_000_000.0


def snap(i: int, t: float | None = None, *, captured: int | None = None, watts: float | None = 5.0,
         infer_restarts: int = 0, rejected: int = 0, model: str = "quant") -> dict:
    """A snapshot shaped like Telemetry.snapshot, for interval I (1 s apart)."""
    return {
        "version": 1, "time": T0 + i if t is None else t, "uptime_s": float(i), "model": model,
        "stages": {
            "capture": {"pid": 10, "alive": True, "restarts": 0, "fps": 30.0, "rss_mb": 70.0, "cpu_percent": 5.0},
            "infer": {"pid": 11, "alive": True, "restarts": infer_restarts, "fps": 10.0 + i % 3, "rss_mb": 100.0, "cpu_percent": 80.0},
            "power": {"pid": 12, "alive": True, "restarts": 0, "fps": None, "rss_mb": 30.0, "cpu_percent": 0.0},
            "launcher": {"pid": 9, "alive": True, "restarts": 0, "fps": None, "rss_mb": 30.0, "cpu_percent": 1.0},
        },
        "frames": {"captured": 30 * i if captured is None else captured, "processed": 10 * i, "dropped": 20 * i},
        "processed_fps": 10.0 + i % 3,
        "latency_ms": {"p50": 50.0 + i, "p95": 90.0 + i},
        "inference_ms": {"model": model, "p50": 40.0, "p95": 60.0},
        "faces_per_s": 5.0,
        "power": {"watts": watts, "backend": "pi5-pmic"} if watts is not None else {"watts": None, "backend": "none"},
        "energy_per_inference_j": {model: 0.5},
        "rejected": {"total": rejected, "by_socket": {}},
        "total_rss_mb": 230.0,
        "source": {"name": "demo", "error": None, "eos": False},
    }


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def write(path: Path, snaps: list[dict], tail: str = "") -> None:
    path.write_text("".join(json.dumps(s) + "\n" for s in snaps) + tail)


def test_counter_delta_counts_across_resets() -> None:
    """A counter that drops (a restarted stage) counts from zero again instead of going negative."""
    assert counter_delta([10, 15, 3, 8]) == 5 + 3 + 5
    assert counter_delta([None, 4, 4]) == 0
    assert counter_delta([]) is None


def test_synthetic_history_summary(tmp_path: Path) -> None:
    """Two minutes of history summarised over the last minute: fps, deltas, percentiles, power and text."""
    path = tmp_path / "telemetry.jsonl"
    snaps = [snap(i) for i in range(121)]
    snaps[100]["stages"]["infer"]["restarts"] = 1
    for s in snaps[101:]:
        s["stages"]["infer"]["restarts"] = 1
        s["rejected"]["total"] = 4
    snaps[110]["power"]["watts"] = 9.0
    write(path, snaps)
    s = summarize(path, 1)
    assert s["records"] == 61 and s["bad_lines"] == 0 and s["files"] == [str(path)]
    assert s["end"] == T0 + 120 and s["start"] == T0 + 60 and s["span_s"] == 60.0
    assert s["frames"] == {"captured": 30 * 61, "processed": 10 * 61, "dropped": 20 * 61}  # baseline: the record at 59 s
    assert s["stages"]["infer"]["restarts"] == 1 and s["stages"]["capture"]["restarts"] == 0
    assert s["stages"]["infer"]["fps_min"] == 10.0 and 10.0 < s["stages"]["infer"]["fps_mean"] < 12.0
    assert s["stages"]["power"]["fps_mean"] is None
    assert s["processed_fps"]["min"] == 10.0
    assert s["latency_ms"]["p50"] == pytest.approx(50 + 90) and s["latency_ms"]["p95"] == pytest.approx(90 + 117)
    assert s["inference_ms"] == {"models": ["quant"], "p50": 40.0, "p95": 60.0}
    assert s["power"]["watts"] == {"mean": pytest.approx((60 * 5 + 9) / 61, abs=1e-3), "min": 5.0, "max": 9.0}
    assert s["power"]["backend"] == "pi5-pmic" and s["power"]["samples"] == 61
    assert s["energy_per_inference_j"] == {"quant": 0.5}
    assert s["window_j_per_frame"] == pytest.approx(s["power"]["watts"]["mean"] * 60 / 610, abs=1e-3)
    assert s["rejected_messages"] == 4
    assert "last 1 min" in s["text"] and "61 records" in s["text"] and "pi5-pmic" in s["text"]


def test_window_reaches_into_rotated_file(tmp_path: Path) -> None:
    """When the window starts before the current file, the rotated .1 file is read too; otherwise it is not."""
    path = tmp_path / "telemetry.jsonl"
    write(path.with_name("telemetry.jsonl.1"), [snap(i) for i in range(0, 50)])
    write(path, [snap(i) for i in range(50, 100)])
    s = summarize(path, 1)
    assert s["files"] == [str(path.with_name("telemetry.jsonl.1")), str(path)]
    assert s["records"] == 61 and s["start"] == T0 + 39
    assert s["frames"]["processed"] == 10 * 61
    s = summarize(path, 0.5)
    assert s["files"] == [str(path)] and s["records"] == 31


def test_restarted_launcher_counters_are_not_negative(tmp_path: Path) -> None:
    """A launcher restart inside the window (counters back to 0) still gives non-negative frame deltas."""
    path = tmp_path / "telemetry.jsonl"
    snaps = [snap(i) for i in range(30)] + [snap(i, t=T0 + 30 + i) for i in range(30)]
    write(path, snaps)
    s = summarize(path, 10)
    assert s["frames"]["processed"] == 10 * 29 + 10 * 29
    assert s["records"] == 60


def test_truncated_last_line_is_skipped(tmp_path: Path) -> None:
    """A last line cut off mid-write (a crash) is skipped and counted; everything before it is summarised."""
    path = tmp_path / "telemetry.jsonl"
    write(path, [snap(i) for i in range(20)], tail=json.dumps(snap(20))[:57])
    s = summarize(path, 5)
    assert s["bad_lines"] == 1 and s["records"] == 20 and s["end"] == T0 + 19
    assert "1 unreadable lines skipped" in s["text"]


def test_record_appended_behind_a_partial_line_is_recovered(tmp_path: Path) -> None:
    """After a crash mid-write, the next run's first record (glued to the partial line) still counts."""
    path = tmp_path / "telemetry.jsonl"
    partial = json.dumps(snap(10))[:80]
    write(path, [snap(i) for i in range(10)], tail=partial + "".join(json.dumps(snap(i)) + "\n" for i in range(11, 15)))
    s = summarize(path, 5)
    assert s["bad_lines"] == 1 and s["records"] == 14 and s["end"] == T0 + 14


def test_missing_and_empty_history(tmp_path: Path) -> None:
    """No file raises FileNotFoundError (emod-stats reports it); an empty file gives an empty summary."""
    with pytest.raises(FileNotFoundError):
        summarize(tmp_path / "telemetry.jsonl", 1)
    (tmp_path / "telemetry.jsonl").write_text("")
    s = summarize(tmp_path / "telemetry.jsonl", 1)
    assert s["records"] == 0 and "no records" in s["text"]


def test_null_power_is_reported_as_unavailable(tmp_path: Path) -> None:
    """Without a power sensor (watts null) the power stats are None and the text says n/a."""
    path = tmp_path / "telemetry.jsonl"
    write(path, [snap(i, watts=None) for i in range(10)])
    s = summarize(path, 1)
    assert s["power"] == {"watts": {"mean": None, "min": None, "max": None}, "backend": "none", "samples": 0}
    assert s["window_j_per_frame"] is None and "power mean n/a" in s["text"]


def test_daemon_killed_mid_write_leaves_a_readable_history(short_tmp, tiny_models, hamilton) -> None:
    """kill -9 of the launcher and its stages leaves a history whose every line but the last is valid JSON."""
    d = Daemon(short_tmp, tiny_models, hamilton, env={"EMOD_TELEMETRY_INTERVAL": "0.2"})
    path = d.statedir / "telemetry.jsonl"
    try:
        d.wait_processing()
        wait_for(lambda: path.exists() and path.read_bytes().count(b"\n") >= 10, 30, what="10 history lines")
        wait_for(lambda: b'"tracks":1' in path.read_bytes(), 30, what="an interval with a face track in the history")
        # field case: another daemon's 27-minute-old history in the default state directory was read as "last 10 min".
        # emod-stats --history without --state-dir asks the running daemon where its history is.
        xdg = short_tmp / "xdg"
        (xdg / "emod").mkdir(parents=True)
        write(xdg / "emod" / "telemetry.jsonl", [snap(i, t=time.time() - 27 * 60 - 60 + i) for i in range(60)])
        env = base_env(tiny_models, STATE_DIRECTORY=str(xdg / "emod"))  # the default state directory, as systemd sets it
        r = subprocess.run([str(EMOD_STATS), "--history", "1", "--runtime-dir", str(d.rundir)], capture_output=True,
                           text=True, timeout=30, env=env)
        print(f"\n$ emod-stats --history 1 --runtime-dir RUNDIR   (an old file in the default state dir)\n{r.stdout[:400]}")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"emod history: last 1 min of {path}") and "asked" not in r.stdout
        assert f"history of the daemon on {d.rundir}" in r.stdout and "models tiny" in r.stdout
        pids = [d.proc.pid] + [c.pid for c in psutil.Process(d.proc.pid).children(recursive=True)]
        os.killpg(d.proc.pid, signal.SIGKILL)
        d.proc.wait(10)
        wait_for(lambda: not any(_running(p) for p in pids), 10, what="every process to die")
    finally:
        d.kill()
    lines = path.read_bytes().split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    for line in lines[:-1]:
        assert isinstance(json.loads(line), dict)
    s = summarize(path, 1)
    assert s["bad_lines"] <= 1 and s["records"] >= len(lines) - 1
    assert s["frames"]["processed"] > 0 and s["models"] == ["tiny"]
    assert sum(s["emotions"]["face_s"].values()) > 0 and s["emotions"]["tracks"] >= 1  # the demo clip's face, per interval
    # emod-stats renders the same summary from the state directory
    r = subprocess.run([str(EMOD_STATS), "--history", "1", "--state-dir", str(d.statedir)], capture_output=True,
                       text=True, timeout=30, env=base_env(tiny_models))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("emod history: last 1 min") and "models tiny" in r.stdout and "infer" in r.stdout
    assert "face-s" in r.stdout.split("emotions ", 1)[1].splitlines()[0]
    r = subprocess.run([str(EMOD_STATS), "--history", "1", "--json", "--state-dir", str(d.statedir)],
                       capture_output=True, text=True, timeout=30, env=base_env(tiny_models))
    assert r.returncode == 0 and json.loads(r.stdout)["records"] == s["records"]


def test_an_old_history_says_how_old_never_last_n_min(tmp_path: Path) -> None:
    """Sibling: no daemon answers, so the default state directory's file is read, and a file 27 min old is labelled by its age."""
    xdg = tmp_path / "xdg"
    (xdg / "emod").mkdir(parents=True)
    hist = xdg / "emod" / "telemetry.jsonl"
    write(hist, [snap(i, t=time.time() - 27 * 60 - 60 + i) for i in range(60)])
    env = {**os.environ, "STATE_DIRECTORY": str(xdg / "emod")}  # the default state directory, as systemd sets it
    r = subprocess.run([str(EMOD_STATS), "--history", "10", "--runtime-dir", str(tmp_path / "run")], capture_output=True,
                       text=True, timeout=30, env=env)
    print(f"\n$ emod-stats --history 10   (no daemon; a 27-min-old file)\n{r.stdout[:300]}")
    assert r.returncode == 0, r.stderr
    head = r.stdout.splitlines()[:2]
    assert head[0] == f"emod history: 10 min up to the newest record of {hist}, written 27 min ago: not live (no daemon is writing it now)"
    assert head[1].startswith(f"(no daemon answers on {tmp_path / 'run'}") and "last 10 min" not in r.stdout
    r = subprocess.run([str(EMOD_STATS), "--history", "10", "--json", "--state-dir", str(xdg / "emod")], capture_output=True,
                       text=True, timeout=30)
    s = json.loads(r.stdout)
    assert s["live"] is False and 27 * 60 <= s["age_s"] < 28 * 60 and s["source"] == f"--state-dir {xdg / 'emod'}"
    write(hist, [snap(i, t=time.time() - 60 + i) for i in range(60)])  # a live file: "last 10 min"
    assert summarize(hist, 10)["text"].startswith("emod history: last 10 min of")


def test_stats_without_history_fails_clearly(tmp_path: Path) -> None:
    """emod-stats --history on a state directory without telemetry.jsonl exits 1 and says so."""
    r = subprocess.run([str(EMOD_STATS), "--history", "1", "--state-dir", str(tmp_path)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "no telemetry history" in r.stderr


def test_emotion_intervals_are_summed_into_shares(tmp_path: Path) -> None:
    """The summary adds up each record's face-seconds per label and tracks, and gives each label's share of the face-time."""
    path = tmp_path / "telemetry.jsonl"
    snaps = [snap(i) for i in range(30)]
    for i, r in enumerate(snaps):
        face_s = {k: 0.0 for k in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")}
        face_s["happy" if i < 20 else "sad"] = 1.0
        r["emotions"] = {"faces": 1, "interval": {"face_s": face_s, "tracks": 1 if i in (0, 20) else 0}}
    write(path, snaps)
    s = summarize(path, 1)
    assert s["emotions"]["face_s"]["happy"] == 20.0 and s["emotions"]["face_s"]["sad"] == 10.0 and s["emotions"]["tracks"] == 2
    assert s["emotions"]["shares"]["happy"] == pytest.approx(2 / 3, abs=1e-3)
    assert "emotions happy 67%, sad 33% (30 face-s, 2 tracks)" in s["text"]
    old = [snap(i) for i in range(3)]  # a history written before emotions were recorded
    write(path, old)
    assert summarize(path, 1)["emotions"]["shares"] is None and "emotions no faces" in summarize(path, 1)["text"]


def test_history_into_a_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    """`emod-stats --history 1 [--json] | head`: exit 0, no traceback, with a reader gone before the first write."""
    write(tmp_path / "telemetry.jsonl", [snap(i) for i in range(121)])
    for extra in ("", "--json"):
        r = subprocess.run(["bash", "-c", f'"{EMOD_STATS}" --history 1 {extra} --state-dir "{tmp_path}" | true; '
                                          'echo "rc=${PIPESTATUS[0]}" >&2'], capture_output=True, text=True, timeout=60)
        assert "rc=0" in r.stderr and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr
