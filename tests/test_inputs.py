"""Inputs that are not what their name says: odd names, special files, wrong extensions, truncated data,
folders, link loops and closed pipes, for `emod analyze` and the folder source (issue 14, kind 6)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from _fixtures import EMOD, base_env, short_tmp, tiny_models  # noqa: F401
from emod import protocol
from emod.sources.folder import FolderSource

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "media" / "photos"
ODD = os.fsencode("face\udcff.jpg")  # not valid UTF-8


def _photo() -> Path:
    p = PHOTOS / "obama_small.jpg"
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return p


def analyze(models: Path, *paths, timeout: float = 120) -> tuple[int, list[dict], str]:
    """`emod analyze --json PATHS` (bytes paths allowed): (exit status, one dict per output line, stderr)."""
    argv = [os.fsencode(str(EMOD)), b"analyze", b"--json", b"--model", b"tiny", *[os.fsencode(p) for p in paths]]
    r = subprocess.run(argv, env=base_env(models), capture_output=True, timeout=timeout)
    return r.returncode, [json.loads(line) for line in r.stdout.splitlines()], r.stderr.decode(errors="replace")


def _gif(path: Path, n: int = 16) -> Path:
    from PIL import Image

    img = cv2.imread(str(_photo()))
    frames = [Image.fromarray(cv2.cvtColor(np.roll(img, 9 * i, axis=1), cv2.COLOR_BGR2RGB)) for i in range(n)]
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return path


def test_file_names_that_are_not_utf8_work(short_tmp, tiny_models) -> None:
    """An image and a video whose names are not valid UTF-8 are analysed (no crash), and named with escapes."""
    d = os.fsencode(str(short_tmp))
    shutil.copy(_photo(), os.path.join(d, ODD))
    video = os.path.join(d, os.fsencode("clip\udcfe.avi"))
    w = cv2.VideoWriter(str(short_tmp / "plain.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for i in range(3):
        w.write(np.roll(cv2.imread(str(_photo())), 5 * i, axis=1))
    w.release()
    os.rename(os.path.join(d, b"plain.avi"), video)  # OpenCV itself must never see such a name
    code, out, err = analyze(tiny_models, os.path.join(d, ODD), video)
    assert code == protocol.EXIT_OK, err
    assert [o["format"] for o in out] == ["jpeg", "video"] and len(out[1]["frames"]) == 3
    assert "\\xff" in out[0]["path"] and "error" not in out[0]


@pytest.mark.parametrize("kind", ["named pipe", "socket"])
def test_special_files_are_refused_not_waited_on(short_tmp, tiny_models, kind) -> None:
    """A named pipe called x.jpg (or a socket) given to analyze fails at once with the reason; in a folder it is skipped."""
    p = short_tmp / "x.jpg"
    holder = None
    if kind == "named pipe":
        os.mkfifo(p)
    else:
        holder = socket.socket(socket.AF_UNIX)
        holder.bind(str(p))
    shutil.copy(_photo(), short_tmp / "a.jpg")
    try:
        code, out, _ = analyze(tiny_models, p, timeout=60)
        assert code == protocol.EXIT_USAGE and kind in out[0]["error"]
        code, out, _ = analyze(tiny_models, short_tmp, timeout=60)
        assert code == protocol.EXIT_OK
        assert {o["path"]: ("skipped" in o) for o in out} == {str(short_tmp / "a.jpg"): False, str(p): True}
        src = FolderSource(str(short_tmp))
        with src:
            frames = []
            while (f := src.read()) is not None:
                frames.append(f)
        assert len(frames) == 1 and any(kind in why for _, why in src.skipped)
    finally:
        if holder is not None:
            holder.close()


def test_analyze_walks_a_folder_without_following_link_loops(short_tmp, tiny_models) -> None:
    """`emod analyze DIR` analyses the files in it and its sub-folders, and stops at a link back up."""
    shutil.copy(_photo(), short_tmp / "a.jpg")
    (short_tmp / "sub").mkdir()
    shutil.copy(_photo(), short_tmp / "sub" / "b.png.jpg")
    os.symlink("..", short_tmp / "sub" / "up")
    code, out, err = analyze(tiny_models, short_tmp)
    assert code == protocol.EXIT_OK, err
    paths = [o["path"] for o in out]
    assert paths == [str(short_tmp / "a.jpg"), str(short_tmp / "sub" / "b.png.jpg"), str(short_tmp / "sub" / "up")]
    assert "loop" in out[2]["skipped"]


@pytest.mark.parametrize("name, fmt, frames", [("anim.png", "gif", 16), ("anim.gif", "gif", 16), ("photo.mp4", "jpeg", 1),
                                               ("photo.gif", "jpeg", 1)])
def test_the_format_comes_from_the_content_not_the_name(short_tmp, tiny_models, name, fmt, frames) -> None:
    """A GIF named .png gives all 16 frames, as the same bytes named .gif do; a JPEG named .mp4 or .gif is one image."""
    p = short_tmp / name
    if fmt == "gif":
        _gif(p)
    else:
        shutil.copy(_photo(), p)
    code, out, err = analyze(tiny_models, p)
    assert code == protocol.EXIT_OK, err
    assert out[0]["format"] == fmt and len(out[0]["frames"]) == frames


def test_a_folder_source_takes_images_by_content(short_tmp) -> None:
    """The folder source reads a JPEG named .dat, and skips a text file named .jpg with the reason."""
    shutil.copy(_photo(), short_tmp / "a.dat")
    (short_tmp / "b.jpg").write_text("not an image")
    with FolderSource(str(short_tmp)) as src:
        assert src.read() is not None and src.read() is None
    assert src.skipped == [(str(short_tmp / "b.jpg"), "not an image")]


@pytest.mark.parametrize("what", ["jpeg", "png", "video"])
def test_truncated_input_is_analysed_with_a_warning(short_tmp, tiny_models, what) -> None:
    """A JPEG cut in half and a video cut short are analysed as far as they go with a warning field; a cut PNG is an error saying so."""
    img = cv2.imread(str(_photo()))
    if what == "jpeg":
        data = _photo().read_bytes()
    elif what == "png":
        data = cv2.imencode(".png", img)[1].tobytes()
    else:
        full = short_tmp / "full.avi"
        w = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
        for i in range(20):
            w.write(np.roll(img, 5 * i, axis=1))
        w.release()
        data = full.read_bytes()
    p = short_tmp / f"cut.{what}"
    p.write_bytes(data[: len(data) // 2])
    code, out, err = analyze(tiny_models, p)
    if what == "png":  # libpng cannot decode part of a file: a clear error instead
        assert code == protocol.EXIT_USAGE and "truncated PNG" in out[0]["error"]
        return
    assert code == protocol.EXIT_OK, err
    assert "truncated" in out[0]["warning"] and out[0]["frames"]


@pytest.mark.parametrize("json_out", [True, False])
def test_a_closed_pipe_ends_analyze_quietly(short_tmp, tiny_models, json_out) -> None:
    """`emod analyze [--json] ... | head -1` exits 0 without a traceback."""
    gif = _gif(short_tmp / "a.gif", 40)
    cmd = f"{EMOD} analyze {'--json' if json_out else ''} --model tiny {gif} {gif} {gif} | head -c 10; exit ${{PIPESTATUS[0]}}"
    r = subprocess.run(["bash", "-c", cmd], env=base_env(tiny_models), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


@pytest.mark.parametrize("cut", ["fragmented", "faststart", "matroska"])
def test_a_video_cut_short_carries_the_ended_early_warning(short_tmp, tiny_models, cut) -> None:
    """Issue 29 kind 3: a fragmented MP4 cut inside a fragment warns like a faststart MP4 cut short does; so does a
    Matroska file cut between clusters (its declared duration is longer than the frames)."""
    from _clips import encode

    frames = [np.roll(cv2.imread(str(_photo())), 7 * i, axis=1) for i in range(30)]
    full = encode(frames, short_tmp / f"full.{'mkv' if cut == 'matroska' else 'mp4'}", fps=15,
                  fragmented=cut == "fragmented", fmt=None)
    if cut == "faststart":  # moov before mdat, as phones and `-movflags faststart` write
        import av

        with av.open(str(full)) as i, av.open(str(short_tmp / "fs.mp4"), "w", options={"movflags": "faststart"}) as o:
            t = o.add_stream_from_template(i.streams.video[0])
            for p in i.demux(i.streams.video[0]):
                if p.dts is not None:
                    p.stream = t
                    o.mux(p)
        full = short_tmp / "fs.mp4"
    data = full.read_bytes()
    p = short_tmp / f"cut{full.suffix}"
    p.write_bytes(data[: len(data) * 6 // 10])
    code, out, err = analyze(tiny_models, p, full)
    assert code == protocol.EXIT_OK, err
    assert "ended early" in out[0]["warning"] and "truncated" in out[0]["warning"] and 0 < len(out[0]["frames"]) < 30
    assert "warning" not in out[1] and len(out[1]["frames"]) == 30  # the whole file: no warning


def test_a_non_ascii_name_in_text_mode_never_ends_the_batch(short_tmp, tiny_models) -> None:
    """Issue 29 kind 2: `PYTHONIOENCODING=ascii emod analyze .` in a folder of non-ASCII names reports every file,
    escaped, exit 0; so do `emod analyze --summary` and `emod validate` (which printed a traceback too)."""
    names = ["café.jpg", "中文.png", "naïve.jpg", "Ünï.jpg", "ñ.jpg", "日本.jpg", "résumé.jpg"]
    for n in names:
        shutil.copy(_photo(), short_tmp / n)
    (short_tmp / "notés.txt").write_text("not media")
    env = base_env(tiny_models, PYTHONIOENCODING="ascii")
    r = subprocess.run([str(EMOD), "analyze", "--model", "tiny", "."], cwd=short_tmp, env=env, capture_output=True,
                       timeout=120)
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr
    out = r.stdout.decode("ascii")  # all of it ASCII
    for n in names:
        assert n.encode("ascii", "backslashreplace").decode() in out
    assert "not\\xe9s.txt: skipped: not an image" in r.stderr.decode("ascii")
    r = subprocess.run([str(EMOD), "analyze", "--model", "tiny", "--summary", "."], cwd=short_tmp, env=env,
                       capture_output=True, timeout=120)
    assert r.returncode == 0 and b"Traceback" not in r.stderr and r.stdout.count(b"\\") >= len(names), r.stderr
    conf = short_tmp / "réglages.toml"
    conf.write_text('[capture]\nsource = "demo"\n')
    r = subprocess.run([str(EMOD), "validate", str(conf)], env=env, capture_output=True, timeout=60)
    assert r.returncode == 0 and b"r\\xe9glages.toml: valid" in r.stdout, r.stdout + r.stderr


def test_files_met_in_a_folder_that_are_not_media_are_skipped(short_tmp, tiny_models) -> None:
    """Issue 29 kind 15: a text file and an M3U playlist met in a folder are `skipped` with the reason (exit 0, with
    --json, text and --summary); named on the command line, the text file is an error (exit 2)."""
    shutil.copy(_photo(), short_tmp / "a.jpg")
    (short_tmp / "MANIFEST.txt").write_text("Real face media for end-to-end demo / tests\n" * 20)
    (short_tmp / "list.m3u").write_text("#EXTM3U\n#EXTINF:-1,x\nhttp://127.0.0.1:9/x.mp4\n")
    code, out, err = analyze(tiny_models, short_tmp)
    assert code == protocol.EXIT_OK, err
    by = {Path(o["path"]).name: o for o in out}
    assert by["a.jpg"]["frames"] and all("not an image" in by[n]["skipped"] for n in ("MANIFEST.txt", "list.m3u"))
    for mode in (["--summary"], []):
        r = subprocess.run([str(EMOD), "analyze", "--model", "tiny", *mode, str(short_tmp)], env=base_env(tiny_models),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stderr.count("skipped: not an image") == 2, r.stderr
    code, out, err = analyze(tiny_models, short_tmp / "MANIFEST.txt")
    assert code == protocol.EXIT_USAGE and "not a video FFmpeg can decode" in out[0]["error"]


def test_a_last_frame_held_for_seconds_is_not_a_cut(short_tmp) -> None:
    """A GIF whose last frame shows for 3 s (its duration says 3.2 s, its frames start by 0.2 s) is whole: no warning."""
    from PIL import Image

    from emod.sources.video import VideoSource

    frames = [Image.fromarray(np.full((60, 80, 3), 20 * i, np.uint8)) for i in range(6)]
    frames[0].save(short_tmp / "held.gif", save_all=True, append_images=frames[1:], duration=[40] * 5 + [3000], loop=0)
    with VideoSource(str(short_tmp / "held.gif")) as v:
        while v.read() is not None:
            pass
        assert v.frames_read == 6 and v.declared_s == pytest.approx(3.2) and v.truncated is None
