"""The documentation site builds with warnings as errors: a broken link, a missing anchor or a page left out fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """`mkdocs build --strict` (what `make docs` runs) succeeds and writes a page for every docs/*.md, images and reports beside them."""
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=REPO,
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    pages = sorted((REPO / "docs").glob("*.md"))
    assert len(pages) >= 8
    for page in pages:
        built = site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert built.is_file(), f"{page.name} was not built"
    assert (site / "reports" / "viewer.png").is_file() and (site / "reports" / "daemon.json").is_file()
