"""The table of ``emod doctor``'s checks, :data:`CHECKS` (in the order printed), and the checks of the Python environment.

Camera checks are in :mod:`emod.doctor.camera`, directory/config/service checks in :mod:`emod.doctor.service`.
"""

from __future__ import annotations

import importlib.metadata
import mmap
import os
import platform
import subprocess
import sys
from pathlib import Path

from emod.doctor import Check, Context, Result, fail, ok, warn
from emod.doctor.camera import check_cameras, check_picamera2
from emod.doctor.readable import check_mqtt_password
from emod.doctor.security import check_security
from emod.doctor.service import check_config, check_dirs, check_preflight, check_systemd
from emod.sources.picamera2 import NUMPY_ABI_FIX, is_numpy_abi_error

# --- Python and the libraries emod needs -------------------------------------------------------------------------


def outside_dirs() -> list[Path]:
    """site/dist-packages folders on sys.path that are not this environment's: apt's, seen through a venv."""
    prefix = Path(sys.prefix).resolve()
    out = []
    for entry in sys.path:
        p = Path(entry or ".").resolve()
        if p.name in ("dist-packages", "site-packages") and p.is_dir() and prefix not in p.parents and p not in out:
            out.append(p)
    return out


def _system_numpy() -> list[tuple[str, str]]:
    found = []
    for d in outside_dirs():
        for dist in importlib.metadata.distributions(path=[str(d)]):
            if (dist.metadata["Name"] or "").lower() == "numpy":
                found.append((str(d), dist.version))
    return found


_IMPORT_VERSIONS = """
import importlib, sys
for mod in sys.argv[1:]:
    print(mod, flush=True)  # a crash right after this line names the module
    try:
        print("version", getattr(importlib.import_module(mod), "__version__", ""), flush=True)
    except BaseException as e:
        print("error", f"{type(e).__name__}: {e}".splitlines()[0], flush=True)
"""
_INSTALL_FIX = ("sudo .venv/bin/pip install -c constraints/pi-$(. /etc/os-release && echo $VERSION_CODENAME).txt -e .  "
                "(in /opt/emod; see docs/install.md)")


def import_versions(mods: tuple[str, ...] = ("numpy", "cv2", "onnxruntime")) -> tuple[dict, dict]:
    """Import MODS in a child Python, in order: ({module: version}, {module: error}).

    A child, because an extension built for another numpy can crash the interpreter (SIGSEGV)
    instead of raising: the module being imported then is reported as having crashed it, and
    the ones after it are not tried.
    """
    r = subprocess.run([sys.executable, "-c", _IMPORT_VERSIONS, *mods], capture_output=True, text=True, timeout=300)
    versions, errors, current = {}, {}, None
    for line in r.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "version" and current:
            versions[current], current = rest, None
        elif kind == "error" and current:
            errors[current], current = rest, None
        elif line in mods:
            current = line
    if r.returncode != 0:
        how = f"signal {-r.returncode}" if r.returncode < 0 else f"exit {r.returncode}"
        errors[current or "python"] = f"the import crashed Python ({how})"
    return versions, errors


def check_versions(ctx: Context) -> Result:
    details: dict = {"python": platform.python_version(), "executable": sys.executable,
                     "venv": sys.prefix != sys.base_prefix, "machine": platform.machine()}
    versions, errors = import_versions()
    details.update(versions)
    ctx.broken_imports = dict(errors)
    if errors:
        return fail("cannot import " + ", ".join(f"{m} ({e})" for m, e in errors.items()), _INSTALL_FIX, **details)
    details["system_numpy"] = dict((d, v) for d, v in _system_numpy())
    verdict = (f"Python {details['python']} ({details['machine']}), numpy {details['numpy']}, OpenCV {details['cv2']}, "
               f"onnxruntime {details['onnxruntime']}")
    clash = [f"{v} in {d}" for d, v in details["system_numpy"].items() if v.split(".")[0] != details["numpy"].split(".")[0]]
    if clash:
        return warn(f"{verdict}; the venv's numpy {details['numpy']} shadows the system's numpy {', '.join(clash)}",
                    NUMPY_ABI_FIX, **details)
    return ok(verdict, **details)


# --- numpy-compiled modules from apt -----------------------------------------------------------------------------


def _uses_numpy_c_api(path: Path) -> bool:
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(b"_ARRAY_API") != -1
    except (OSError, ValueError):
        return False


def numpy_extensions(dirs: list[Path]) -> dict[str, str]:
    """{top-level package: one of its extension modules compiled against numpy's C API} found in DIRS."""
    found: dict[str, str] = {}
    for d in dirs:
        for top in sorted(os.listdir(d)):
            if top in found or top == "numpy" or top.startswith((".", "_")) and not top.endswith(".so"):
                continue
            root = d / top
            files = sorted(root.rglob("*.so")) if root.is_dir() else ([root] if top.endswith(".so") else [])
            for f in files:
                if _uses_numpy_c_api(f):
                    rel = f.relative_to(d).with_suffix("")
                    found[top.split(".")[0]] = ".".join(rel.parts[:-1] + (rel.name.split(".")[0],))
                    break
    return found


def check_numpy_abi(ctx: Context) -> Result:
    dirs = outside_dirs()
    mods = numpy_extensions(dirs)
    if not mods:
        return ok(f"no numpy-compiled modules outside this environment ({len(dirs)} system folder(s) on the path)",
                  dirs=[str(d) for d in dirs])
    versions, errors = import_versions(tuple(mods.values()))
    crashed = next((m for m, e in errors.items() if e.startswith("the import crashed")), None)
    for m in mods.values():  # after a crash the rest were not tried
        if m not in versions and m not in errors:
            errors[m] = f"not tried: importing {crashed or 'an earlier module'} crashed Python first"
    failed = {pkg: errors[m] for pkg, m in mods.items() if errors.get(m)}
    details = {"modules": mods, "failed": failed}
    if failed:
        abi = any(is_numpy_abi_error(e) for e in failed.values())
        return fail("numpy-compiled system modules fail to import here: "
                    + "; ".join(f"{p} ({e})" for p, e in failed.items()),
                    NUMPY_ABI_FIX if abi else "sudo apt install --reinstall -y " + " ".join(f"python3-{p}" for p in failed),
                    **details)
    return ok(f"{len(mods)} numpy-compiled system module(s) import: {', '.join(mods)}", **details)


# --- power and models -----------------------------------------------------------------


def check_power(ctx: Context) -> Result:
    from emod.power.select import open_backend

    name = ctx.cfg.power.backend
    try:
        backend = open_backend(name)
    except Exception as e:
        return warn(f"power backend {name!r} unavailable: {e}", "set [power] backend = \"auto\" (power is then reported "
                    "as unknown; nothing else stops)")
    try:
        watts = backend.read()
        if watts is None and backend.name == "rapl":  # RAPL needs two readings a moment apart
            import time

            time.sleep(0.2)
            watts = backend.read()
    finally:
        backend.close()
    if backend.name == "none":
        return warn(f"no power reading: {backend.last_error}", "on a Pi 5: vcgencmd (package raspi-utils) and group video",
                    backend="none")
    reading = "no reading yet" if watts is None else f"{watts:.2f} W"
    return ok(f"{backend.name}: {reading}", backend=backend.name, watts=watts)


def check_models(ctx: Context) -> Result:
    if ctx.broken_imports:  # loading a model imports them in this process: a crash would end the doctor
        return fail("not tried: " + ", ".join(ctx.broken_imports) + " cannot be imported (see the python check)", _INSTALL_FIX)
    import numpy as np

    from emod.models import registry
    from emod.models.classifier import Classifier
    from emod.vision import detect

    state = ctx.cfg.daemon.state_dir or None
    models = registry.available(state)
    bad = {}
    for name, info in models.items():
        try:
            registry.verify(info)
        except registry.ModelError as e:
            bad[name] = str(e)
    want = ctx.cfg.infer.model
    details = {"models": sorted(models), "corrupt": bad, "model": want, "detector": ctx.cfg.infer.detector}
    fix_models = "reinstall emod (sudo .venv/bin/pip install -e . in /opt/emod) or `emod-ctl set-model` another model"
    if want not in models:
        return fail(f"[infer] model {want!r} not found (available: {', '.join(sorted(models)) or 'none'})", fix_models, **details)
    if want in bad:
        return fail(bad[want], fix_models, **details)
    try:
        Classifier(models[want])  # loads and runs once
    except Exception as e:
        return fail(f"model {want!r} does not load: {e}", fix_models, **details)
    try:
        det = detect.from_config(ctx.cfg.infer)
        det.detect(np.zeros((240, 320, 3), np.uint8))
    except Exception as e:
        return fail(f"detector {ctx.cfg.infer.detector!r} does not load: {e}", "reinstall emod, or set [infer] detector", **details)
    verdict = f"model {want!r} verified and runs; detector {ctx.cfg.infer.detector} loads; {len(models)} model(s): {', '.join(sorted(models))}"
    if bad:
        return warn(verdict + f"; corrupt: {', '.join(bad)}", fix_models, **details)
    return ok(verdict, **details)


#: The checks, in the order printed. Add a row to add a check.
CHECKS: tuple[Check, ...] = (
    Check("python", "Python and the versions of numpy, OpenCV and onnxruntime", check_versions),
    Check("numpy-abi", "numpy-compiled system modules (apt's) import in this environment", check_numpy_abi),
    Check("picamera2", "import picamera2, with the real exception when it fails", check_picamera2),
    Check("cameras", "cameras found, V4L2 devices and whether this user can open them", check_cameras),
    Check("power", "the power backend and one reading", check_power),
    Check("models", "the models (SHA-256) and the configured model and detector load", check_models),
    Check("dirs", "the runtime and state directories are writable", check_dirs),
    Check("security", "directories nobody else controls; no unauthenticated non-loopback endpoint", check_security),
    Check("config", "the config file is valid", check_config),
    Check("mqtt-password", "the service's user can read the MQTT password file", check_mqtt_password),
    Check("preflight", "what the config points at: MQTT password and CA files, the Prometheus port, the runtime directory path",
          check_preflight),
    Check("systemd", "the systemd unit: installed, and its paths visible to the service", check_systemd),
)
