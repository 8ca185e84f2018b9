"""``make pi-check``: the Raspberry Pi install of docs/install.md, run on emulated arm64 Debian, compared with this machine.

    python tools/pi_check.py [--releases bookworm trixie] [--json FILE] [--cache DIR] [--no-full]

For each release (the bases of Raspberry Pi OS) it builds once, and caches outside the
repository (``--cache``, default ``/var/cache/emod-pi``), an arm64 root with
``debootstrap --variant=minbase`` including ``python3-numpy`` and ``python3-scipy`` (the
stand-in for apt's numpy-compiled camera modules, simplejpeg), run through
``qemu-user-static`` and ``binfmt_misc``, emulating the Pi 5's Cortex-A76 (``QEMU_CPU``). On a fresh copy of that root it runs the
the install commands of docs/install.md word for word, except ``sudo`` (the
chroot is root already), ``python3-picamera2`` (only Raspberry Pi's repository has it) and
``<this repository>`` (a bare clone of this checkout's HEAD). Then, each against this
machine's result computed now with the same commit:

- ``numpy_abi_ok``: ``import scipy.ndimage`` (apt's, numpy-compiled) works in the venv;
- ``install_ok``: every install command exited 0 and ``emod --help`` runs;
- ``analyze_ok``: ``emod analyze --json`` on the shared photos and one clip finds the same faces (boxes
  at IoU >= 0.5: YuNet is a float network, whose sums ONNX Runtime rounds differently per CPU) with the
  same labels, except where x86's top two probabilities are within 0.1 (``analyze.identical``: exactly the same);
- ``quant_agreement`` / ``quant_max_abs_diff``: ``quant`` on 400 seeded PrivateTest faces, top-label
  agreement and largest absolute probability difference (``quant_tensor_identical``: same input tensor);
- ``full_ok``: ``pip install '.[full]'`` (the wheel, as the install block; torch 2.13.0) works and ``full`` gives the same top labels;
- ``run_ok``: ``emod run --source demo --duration 30`` reaches its first result and exits 0;
- ``surfaces_ok``: one entry per surface a Pi owner uses, from ``tools/pi_surfaces.py`` run in the root with
  the venv's Python (after ``apt-get install mosquitto systemd procps`` there), before ``[full]`` is installed, so
  ``set-model full`` runs without PyTorch: the web page, ``/api/emotions`` and ``/events``; ``emod-view passwd
  --stdin`` (Argon2id); the login off loopback; ``[mqtt]`` ``online`` and discovery on mosquitto; ``emod events
  --json``; ``emod doctor --json``; ``set-model full`` then ``quant``; ``systemd-analyze verify`` (``null`` where
  the root's systemd cannot run it); no traceback.

Writes ``{"releases": {"bookworm": {...}, "trixie": {...}}, ...}`` and exits 1 when a check
fails (quant needs >= 99.5 % agreement), 2 when emulation cannot be set up (the command and
its error are printed). Needs root, ``debootstrap``, ``qemu-user-static`` and network access
to Debian and PyPI. Timings under emulation mean nothing; correctness and installability do.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from emod.vision.track import iou
from emod.cli.argtypes import plain

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RELEASES = ("bookworm", "trixie")
INCLUDE = "python3,python3-venv,python3-pip,python3-numpy,python3-scipy,git,make,ca-certificates"
MIRROR = "http://deb.debian.org/debian"
README_MARK = "<!-- pi-check: the commands below are run by make pi-check -->"
CAMERA_PACKAGES = ("python3-picamera2",)
SRC = "/mnt/emod.git"  # where the bare clone of this checkout appears inside the root
MEDIA = "/mnt/media"
QUANT_MIN_AGREEMENT = 0.995
FACES = 400
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
HOST_CA_IN_ROOT = "/etc/ssl/certs/pi-check-host-ca.crt"
PI5_CPU = "cortex-a76"  # the Raspberry Pi 5's core (BCM2712): qemu-user emulates it instead of its default "max"
LABEL_MARGIN = 0.1  # analyze_ok: labels must agree where x86's top probability leads the second by at least this
BOX_IOU = 0.5  # analyze_ok: each arm64 box overlaps its x86 box at least this much (the usual detection-matching IoU)


class SetupError(RuntimeError):
    """Emulation cannot be set up here: the message names the command and its error."""


def run(cmd: list[str] | str, log: Path, timeout: float, shell: bool = False) -> tuple[int, float]:
    """Run CMD, appending its output to LOG; (exit status, seconds). A timeout is status 124."""
    t0 = time.monotonic()
    with open(log, "a") as f:
        f.write(f"\n$ {cmd if shell else ' '.join(map(str, cmd))}\n")
        f.flush()
        try:
            rc = subprocess.run(cmd, shell=shell, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            f.write(f"\n[pi-check: timed out after {timeout:.0f} s]\n")
            rc = 124
    return rc, time.monotonic() - t0


def _must(cmd: list[str]) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SetupError(f"`{' '.join(cmd)}` failed ({r.returncode}): {(r.stderr or r.stdout).strip()}")
    return r.stdout


def ensure_binfmt() -> None:
    """qemu-aarch64 registered with binfmt_misc (mounting and enabling it if needed), or SetupError."""
    if os.geteuid() != 0:
        raise SetupError("pi-check needs root (debootstrap, chroot, mounts)")
    for tool in ("debootstrap", "qemu-aarch64-static", "update-binfmts"):
        if shutil.which(tool) is None:
            raise SetupError(f"{tool} not found: apt-get install -y debootstrap qemu-user-static binfmt-support")
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not Path("/proc/sys/fs/binfmt_misc/status").exists():
        _must(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"])
    if not entry.exists() or "enabled" not in entry.read_text():
        _must(["update-binfmts", "--enable", "qemu-aarch64"])
    if "enabled" not in entry.read_text():
        raise SetupError(f"{entry} is not enabled after update-binfmts --enable qemu-aarch64")


def ensure_root(cache: Path, release: str, log: Path) -> float:
    """The cached pristine root of RELEASE (debootstrap once); seconds spent building it (0 when cached)."""
    root = cache / release
    if (root / ".done").exists():
        return 0.0
    tmp = cache / f"{release}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    rc, secs = run(["nice", "-n", "10", "debootstrap", "--arch=arm64", "--variant=minbase", f"--include={INCLUDE}",
                    release, str(tmp), MIRROR], log, timeout=7200)
    if rc != 0:
        raise SetupError(f"debootstrap of {release} failed ({rc}); see {log}")
    tmp.rename(root)
    (root / ".done").touch()
    return secs


INSTALL_PAGE = REPO / "docs" / "install.md"  # the Pi install block, marked by README_MARK (README.md repeats it in brief)


def readme_commands(readme: Path = INSTALL_PAGE) -> list[str]:
    """The shell lines of the code block after README_MARK in the install page, comments stripped."""
    text = readme.read_text()
    if README_MARK not in text:
        raise SystemExit(f"pi-check: {readme} has no {README_MARK!r} before the Pi install commands")
    block = text.split(README_MARK, 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [re.sub(r"\s+#.*$", "", ln).strip() for ln in block.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def as_chroot_script(commands: list[str]) -> str:
    """The install page's commands as run in the root: no sudo, no Raspberry-Pi-only packages, the clone from SRC."""
    out = ["set -ex"]  # package lists: debootstrap leaves them, as a Pi has them
    for c in commands:
        c = re.sub(r"(^|&& |; )sudo ", r"\1", c)
        for pkg in CAMERA_PACKAGES:
            c = c.replace(f" {pkg}", "")
        out.append(c.replace("<this repository>", SRC))
    return "\n".join(out) + "\n"


class Root:
    """A throw-away copy of a cached root with /proc, /sys, /dev, the media and the source mounted."""

    def __init__(self, cache: Path, release: str, bare: Path, log: Path):
        self.path, self.log = cache / f"{release}-run", log
        self.release = release
        if self.path.exists():
            self._umount()
            shutil.rmtree(self.path)
        _must(["cp", "-a", "--reflink=auto", str(cache / release), str(self.path)])
        self.mounts = []
        # no /sys: under qemu-user the root would see this x86 host's /sys/devices/system/cpu, and onnxruntime >= 1.28
        # (its cpuinfo) crashes on import reading it (measured: 1.32 imports without it, SIGSEGVs with it); a Pi has its own
        for src, dst, opts in (("proc", "proc", ["-t", "proc"]), ("/dev", "dev", ["--rbind"]),
                               (str(SHARED / "media"), MEDIA[1:], ["--bind", "-o", "ro"]), (str(bare), SRC[1:], ["--bind"])):
            target = self.path / dst
            target.mkdir(parents=True, exist_ok=True)
            _must(["mount", *opts, src, str(target)])
            self.mounts.append(target)
        shutil.copy("/etc/resolv.conf", self.path / "etc" / "resolv.conf")
        # this machine's CA bundle, for pip inside the root: where a proxy re-signs TLS (as in emod's sandbox),
        # the root's own Debian bundle fails PyPI with CERTIFICATE_VERIFY_FAILED. A Pi does not need this.
        shutil.copy(HOST_CA, self.path / HOST_CA_IN_ROOT.lstrip("/"))

    def sh(self, script: str, timeout: float, cwd: str = "/opt/emod") -> tuple[int, float]:
        env = ["env", "-i", "HOME=/root", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "DEBIAN_FRONTEND=noninteractive", "LANG=C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_ROOT_USER_ACTION=ignore",
               f"PIP_CERT={HOST_CA_IN_ROOT}", f"SSL_CERT_FILE={HOST_CA_IN_ROOT}", f"QEMU_CPU={PI5_CPU}"]
        return run(["chroot", str(self.path), *env, "bash", "-c", f"cd {cwd} 2>/dev/null || cd /; {script}"], self.log, timeout)

    def out(self, script: str, timeout: float) -> tuple[int, str]:
        with tempfile.NamedTemporaryFile("r", dir=self.path / "tmp", suffix=".out") as f:
            rc, _ = self.sh(f"{script} > /tmp/{Path(f.name).name}", timeout)
            return rc, Path(f.name).read_text()

    def _umount(self) -> None:
        for m in reversed(getattr(self, "mounts", [])):
            subprocess.run(["umount", "-l", str(m)], capture_output=True)
        for sub in (SRC[1:], MEDIA[1:], "dev", "sys", "proc"):  # also those left by an interrupted run
            subprocess.run(["umount", "-R", "-l", str(self.path / sub)], capture_output=True)

    def close(self) -> None:
        self._umount()


def x86(args: list[str], pythonpath: Path, log: Path, timeout: float) -> tuple[int, str]:
    """Run ``python ARGS`` on this machine with PYTHONPATH=the root's clone (the same commit); (status, stdout)."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    env.pop("EMOD_MODELS_DIR", None)
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout)
    with open(log, "a") as f:
        f.write(f"\n$ [x86] python {' '.join(args)}\n{r.stderr[-4000:]}")
    return r.returncode, r.stdout


def faces_sample(n: int = FACES) -> np.ndarray:
    """N seeded PrivateTest faces (tools/evaluate.py's --limit sample)."""
    sys.path.insert(0, str(REPO / "tools"))
    from evaluate import select

    from emod.datasets import fer2013

    return select(fer2013.load(SHARED / "data" / "fer2013"), "private", n).images


def analyze_key(stdout: str) -> list:
    """``emod analyze --json`` output (one object per input) -> [(file name, frame index, [(box, label), ...]), ...].

    An input that failed is one row ``(name, "error", message)``, so two runs agree only if they fail alike.
    """
    return _key(_analyze_rows(stdout))


def _key(rows: list) -> list:
    return [(name, idx, [(tuple(f["box"]), f["label"]) for f in faces]) if idx != "error" else (name, idx, faces)
            for name, idx, faces in rows]


def _analyze_rows(stdout: str) -> list:
    rows = []
    for ln in stdout.splitlines():
        if not ln.startswith("{"):
            continue
        r = json.loads(ln)
        name = Path(r["path"]).name
        if "error" in r:
            rows.append((name, "error", r["error"]))
        rows += [(name, fr["index"], fr["faces"]) for fr in r.get("frames", [])]
    return rows


def compare_analyze(arm_stdout: str, x86_stdout: str) -> dict:
    """Compare two ``emod analyze --json`` runs face by face.

    ``identical``: the same boxes and labels exactly. ``same_faces``: the same frames, the same
    number of faces in each, each arm64 box at IoU >= BOX_IOU with the x86 box it pairs with
    (greedy, best first). ``label_differences``: paired faces whose labels differ; ``close_calls``
    those among them where x86's top probability leads its second by less than LABEL_MARGIN
    (a face the classifier is unsure of flips with a pixel of framing). ``ok``: same_faces and
    every label difference a close call. ``diff``: the first five differing frames, (arm64, x86).
    """
    ra, rx = _analyze_rows(arm_stdout), _analyze_rows(x86_stdout)
    ka, kx = _key(ra), _key(rx)
    out = {"frames": len(rx), "faces": 0, "identical": ka == kx and bool(rx),
           "same_faces": bool(rx) and [r[:2] for r in ra] == [r[:2] for r in rx], "min_iou": 1.0,
           "label_differences": 0, "close_calls": 0}
    for (_, idx, fa), (name, _, fx) in zip(ra, rx):
        if idx == "error":
            out["same_faces"] &= fa == fx
            continue
        out["faces"] += len(fx)
        if len(fa) != len(fx):
            out["same_faces"] = False
            continue
        pairs = sorted(((iou(a["box"], x["box"]), i, j) for i, a in enumerate(fa) for j, x in enumerate(fx)), reverse=True)
        used_a, used_x = set(), set()
        for overlap, i, j in pairs:
            if i in used_a or j in used_x:
                continue
            used_a.add(i), used_x.add(j)
            out["min_iou"] = min(out["min_iou"], round(overlap, 3))
            if fa[i]["label"] != fx[j]["label"]:
                out["label_differences"] += 1
                top2 = sorted(fx[j]["probs"], reverse=True)[:2]
                out["close_calls"] += top2[0] - top2[1] < LABEL_MARGIN
    out["same_faces"] &= out["min_iou"] >= BOX_IOU
    out["ok"] = bool(out["same_faces"] and out["label_differences"] == out["close_calls"])
    out["diff"] = [[a, x] for a, x in zip(ka, kx) if a != x][:5]  # the first differing frames, (arm64, x86)
    return out


def _compare(a: dict, b: dict, model: str) -> dict:
    if f"{model}_probs" not in a or f"{model}_probs" not in b:
        return {"error": str(a.get(f"{model}_error", b.get(f"{model}_error", "no result")))}
    pa, pb = a[f"{model}_probs"], b[f"{model}_probs"]
    return {"agreement": float((pa.argmax(1) == pb.argmax(1)).mean()), "max_abs_diff": float(np.abs(pa - pb).max()),
            "tensor_identical": bool(np.array_equal(a[f"{model}_tensor"], b[f"{model}_tensor"]))}


def check_release(cache: Path, release: str, bare: Path, faces: np.ndarray, with_full: bool, workdir: Path) -> dict:
    log = workdir / f"{release}.log"
    log.write_text("")
    res: dict = {"log": str(log)}
    secs: dict = {}
    secs["debootstrap"] = round(ensure_root(cache, release, log), 1)
    root = Root(cache, release, bare, log)
    clone = root.path / "opt" / "emod"
    try:
        script = as_chroot_script(readme_commands())
        res["commands"] = script.splitlines()[1:]
        rc, secs["install"] = root.sh(script, timeout=3600, cwd="/")
        rc_help, _ = root.sh(".venv/bin/emod --help >/dev/null", timeout=300)
        res["install_ok"] = rc == 0 and rc_help == 0
        if not res["install_ok"]:
            return res | {"seconds": secs, "error": f"install failed (exit {rc}); see {log}"}
        rc, out = root.out(".venv/bin/pip list --format=json", timeout=300)
        res["pip"] = {p["name"]: p["version"] for p in json.loads(out or "[]")
                      if p["name"].lower() in ("numpy", "opencv-python-headless", "onnxruntime", "torch", "scipy", "pyzmq", "av")}
        rc, out = root.out(".venv/bin/python -c 'import scipy.ndimage, numpy; print(numpy.__version__, numpy.__file__)'", 600)
        res["numpy_abi_ok"], res["venv_numpy"] = rc == 0, out.strip()
        rc, out = root.out(".venv/bin/emod doctor --json", timeout=900)
        try:
            res["doctor"] = {c["name"]: f"{c['status']}: {c['verdict']}" for c in json.loads(out)["checks"]}
        except ValueError:
            res["doctor"] = f"no JSON (exit {rc})"
        # every surface a Pi owner uses, on the Pi install as it is (no torch yet)
        t0 = time.monotonic()
        res["surfaces_ok"], res["surfaces"] = check_surfaces(root)
        secs["surfaces"] = round(time.monotonic() - t0, 1)
        # quant (and full) on the same faces, here and there
        np.save(root.path / "tmp" / "faces.npy", faces)
        models = ["quant"]
        if with_full:
            rc, secs["install_full"] = root.sh(f"pip_c=constraints/pi-{release}.txt; .venv/bin/pip install -c $pip_c '.[full]'",
                                               timeout=5400)
            res["full_install_ok"] = rc == 0
            models.append("full")
        t0 = time.monotonic()
        for m in models:  # one process each: a crash of one runtime (torch under emulation, say) loses only its model
            root.sh(f".venv/bin/python tools/pi_probe.py /tmp/faces.npy /tmp/arm-{m}.npz --models {m}", timeout=3600)
        secs["probe"] = round(time.monotonic() - t0, 1)
        rc, _ = x86([str(clone / "tools" / "pi_probe.py"), str(root.path / "tmp" / "faces.npy"), str(workdir / f"{release}-x86.npz"),
                     "--models", *models], clone, log, timeout=1800)
        arm: dict = {}
        for m in models:
            f = root.path / "tmp" / f"arm-{m}.npz"
            arm |= dict(np.load(f)) if f.is_file() else {f"{m}_error": np.array("the probe died without a result; see the log")}
        ref = dict(np.load(workdir / f"{release}-x86.npz"))
        res["versions"] = {"arm64": json.loads(str(arm.get("versions", "{}"))), "x86": json.loads(str(ref["versions"]))}
        q = _compare(arm, ref, "quant")
        res["quant_agreement"], res["quant_max_abs_diff"] = q.get("agreement"), q.get("max_abs_diff")
        res["quant_tensor_identical"] = q.get("tensor_identical")
        if "error" in q:
            res["quant_error"] = q["error"]
        if with_full:
            f = _compare(arm, ref, "full")
            res["full_agreement"], res["full_max_abs_diff"] = f.get("agreement"), f.get("max_abs_diff")
            res["full_ok"] = bool(res["full_install_ok"] and f.get("agreement") == 1.0)
            if "error" in f:
                res["full_error"] = f["error"]
        else:
            res["full_ok"] = None
        # emod analyze: photos and one clip
        photos = sorted((SHARED / "media" / "photos").glob("*.jpg"))
        clip = SHARED / "media" / "video" / "short_hamilton_clip.mp4"
        rel = [f"{MEDIA}/{p.relative_to(SHARED / 'media')}" for p in [*photos, clip]]
        t0 = time.monotonic()
        rc_a, out_a = root.out(f".venv/bin/emod analyze --json --every 5 {' '.join(rel)}", timeout=3600)
        secs["analyze"] = round(time.monotonic() - t0, 1)
        rc_x, out_x = x86(["-m", "emod.cli.main", "analyze", "--json", "--every", "5", *map(str, [*photos, clip])], clone, log, 1800)
        cmp = compare_analyze(out_a, out_x)
        res["analyze_ok"] = rc_a == 0 and rc_x == 0 and cmp["ok"]
        diff = cmp.pop("diff")
        res["analyze"] = cmp
        if not cmp["identical"]:
            res["analyze_diff"] = diff
        # emod run on the demo clip
        t0 = time.monotonic()
        rc, out = root.out(".venv/bin/emod run --source demo --duration 30 --runtime-dir /tmp/emod-run "
                           "--state-dir /tmp/emod-state 2>&1", timeout=900)
        secs["run"] = round(time.monotonic() - t0, 1)
        res["run_ok"] = rc == 0 and "first result" in out
        res["run_tail"] = out.strip().splitlines()[-3:]
        return res | {"seconds": secs}
    finally:
        root.close()


SURFACE_PACKAGES = "mosquitto systemd procps"  # Debian's broker for [mqtt]; systemd-analyze for the units; procps: /bin/kill, which emod.service's ExecReload names (Raspberry Pi OS has it, a minbase root does not)


def check_surfaces(root: Root) -> tuple[dict, dict]:
    """({surface: true | false | null}, {surface: detail}) from tools/pi_surfaces.py run inside ROOT's venv."""
    rc, _ = root.sh(f"apt-get install -y -q {SURFACE_PACKAGES}", timeout=1800)
    rc, out = root.out(".venv/bin/python tools/pi_surfaces.py --bin .venv/bin --timeout 600", timeout=5400)
    try:
        report = json.loads(out)
        return report["surfaces_ok"], report["details"]
    except (ValueError, KeyError):
        return {"pi_surfaces": False}, {"pi_surfaces": f"no report (exit {rc}): {out[-400:]}"}


def failed_surfaces(r: dict) -> list[str]:
    """surfaces_ok's false entries (null: could not be tried in that root)."""
    return [k for k, v in (r.get("surfaces_ok") or {}).items() if v is False]


def verdict(r: dict) -> list[str]:
    """The names of the failed checks of one release."""
    bad = [k for k in ("install_ok", "numpy_abi_ok", "analyze_ok", "run_ok", "full_ok") if r.get(k) is False]
    bad += [f"surfaces_ok.{k}" for k in failed_surfaces(r)]
    if r.get("install_ok") and "surfaces_ok" not in r:
        bad.append("surfaces_ok")
    if (r.get("quant_agreement") or 0) < QUANT_MIN_AGREEMENT:
        bad.append("quant_agreement")
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=plain(__doc__.split("\n\n")[0]))
    p.add_argument("--releases", nargs="+", default=list(RELEASES), choices=RELEASES)
    p.add_argument("--json", help="write the results here (make pi-check: docs/reports/pi_check.json)")
    p.add_argument("--cache", default=os.environ.get("EMOD_PI_CACHE", "/var/cache/emod-pi"), help="where the roots are kept")
    p.add_argument("--no-full", action="store_true", help="skip torch and `full` (full_ok is then null)")
    p.add_argument("--update", action="store_true", help="keep the other releases already in --json (one release at a time)")
    args = p.parse_args(argv)
    t_start = time.monotonic()
    try:
        ensure_binfmt()
    except SetupError as e:
        print(f"pi-check: cannot emulate arm64 here: {e}", file=sys.stderr)
        return 2
    cache = Path(args.cache)
    workdir = cache / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    head = _must(["git", "-C", str(REPO), "rev-parse", "HEAD"]).strip()
    if _must(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"]).strip():
        print("pi-check: uncommitted changes are not checked: the roots clone HEAD", head[:12], file=sys.stderr)
    bare = workdir / "emod.git"
    shutil.rmtree(bare, ignore_errors=True)
    _must(["git", "clone", "-q", "--bare", str(REPO), str(bare)])
    faces = faces_sample()
    report: dict = {"commit": head, "faces": len(faces), "releases": {}}
    for release in args.releases:
        print(f"pi-check: {release} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            r = check_release(cache, release, bare, faces, not args.no_full, workdir)
        except SetupError as e:
            print(f"pi-check: {release}: {e}", file=sys.stderr)
            return 2
        r["total_seconds"] = round(time.monotonic() - t0, 1)
        r["failed"] = verdict(r)
        report["releases"][release] = r
        print(f"pi-check: {release}: " + ("every check true" if not r["failed"] else "FAILED " + ", ".join(r["failed"]))
              + f" ({r['total_seconds']:.0f} s)", file=sys.stderr, flush=True)
    report["total_seconds"] = round(time.monotonic() - t_start, 1)
    if args.update and args.json and Path(args.json).is_file():
        old = json.loads(Path(args.json).read_text())
        report["releases"] = {**old.get("releases", {}), **report["releases"]}
        report["runs"] = [*old.get("runs", [{"commit": old.get("commit"), "total_seconds": old.get("total_seconds")}]),
                          {"commit": head, "releases": args.releases, "total_seconds": report["total_seconds"]}]
    text = json.dumps(report, indent=2, default=str)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    print(text)
    if args.json:
        print(f"wrote {args.json}", file=sys.stderr)  # stdout stays the report
    return 1 if any(report["releases"][r]["failed"] for r in args.releases) else 0


if __name__ == "__main__":
    sys.exit(main())
