"""tools/pi_surfaces.py, the surface checker make pi-check runs in each emulated root.

Its passing run is in tests/test_wheel.py (the fresh venv of the wheel, as a Pi install); here: it can fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import pi_surfaces  # noqa: E402


def test_a_daemon_that_never_starts_fails_every_surface(tmp_path) -> None:
    """A venv whose `emod` exits at once: every entry false, the reason named, exit 1."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("emod", "emod-view", "emod-ctl"):
        (bin_dir / name).write_text("#!/bin/sh\necho 'emod: config error: nothing here' >&2\nexit 78\n")
        (bin_dir / name).chmod(0o755)
    r = subprocess.run([sys.executable, str(REPO / "tools" / "pi_surfaces.py"), "--bin", str(bin_dir), "--timeout", "20",
                        "--json", str(tmp_path / "s.json")], capture_output=True, text=True, timeout=120)
    report = json.loads((tmp_path / "s.json").read_text())
    assert r.returncode == 1 and set(report["surfaces_ok"]) == set(pi_surfaces.SURFACES)
    assert all(v is False for v in report["surfaces_ok"].values())
    assert "never reached its first result" in report["details"]["web_page"] and "config error" in report["details"]["web_page"]


def test_pi_check_fails_a_release_on_a_false_surface() -> None:
    import pi_check

    good = {"install_ok": True, "numpy_abi_ok": True, "analyze_ok": True, "run_ok": True, "full_ok": True,
            "quant_agreement": 1.0, "surfaces_ok": dict.fromkeys(pi_surfaces.SURFACES, True) | {"systemd_verify": None}}
    assert pi_check.verdict(good) == []
    assert pi_check.verdict(good | {"surfaces_ok": good["surfaces_ok"] | {"web_page": False}}) == ["surfaces_ok.web_page"]
    assert pi_check.verdict({k: v for k, v in good.items() if k != "surfaces_ok"}) == ["surfaces_ok"]
