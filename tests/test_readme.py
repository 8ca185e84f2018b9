"""The README and the documentation pages in docs/ stay true to the code they document."""

from pathlib import Path

from emod import config

README = Path(__file__).resolve().parents[1] / "README.md"
PAGES = [README, *sorted((README.parent / "docs").rglob("*.md"))]  # README.md and every page of the site
CONFIG_PAGE = README.parent / "docs" / "configuration.md"


def test_config_table_matches_the_config_models():
    """The configuration page's option table is exactly what the config dataclasses generate."""
    assert config.reference() in CONFIG_PAGE.read_text()


def test_the_site_has_its_pages():
    """The site holds at least 8 pages besides the home page, each with one title."""
    assert len(PAGES) - 1 >= 9, [p.name for p in PAGES]
    for page in PAGES:
        assert page.read_text().startswith("# "), f"{page.name} does not start with its title"


def test_quick_start_commands_exist():
    """The Quick start's two commands are Makefile targets, and come first in the README."""
    text = README.read_text()
    assert text.index("make run") < text.index("```sh\nsudo"), "the Quick start is not the README's first set of commands"
    make = (README.parent / "Makefile").read_text()
    assert "make run" in text and "make test" in text
    assert "\nrun:" in make and "\ntest:" in make


# --- every command line of the README, against the CLI it names --------------------------------------------------

import re  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

BIN = Path(sys.executable).parent
CLIS = ("emod", "emod-view", "emod-stats", "emod-ctl")  # console scripts (pyproject.toml)
NOT_OURS = {"sudo", "make", "git", "apt", "curl", "echo", "sha256sum", "systemctl", "journalctl", "usermod", "cd"}


def readme_commands() -> list[list[str]]:
    """Every emod command line of the README and the docs pages as argv (program first): shell-block lines and
    inline code spans that start with an emod CLI or a tools/ script, with prefixes (sudo, .venv/bin/, python) dropped."""
    text = "\n\n".join(page.read_text() for page in PAGES)
    lines = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S):
        if lang in ("sh", "bash"):
            for line in body.splitlines():
                lines += [part for part in re.split(r"&&|\|", line.split(" # ", 1)[0] if " # " in line else line)]
    lines += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    out = []
    for line in lines:
        try:
            words = shlex.split(line.strip())
        except ValueError:
            continue
        while words and (words[0] in ("sudo", "python", "python3") or words[0].endswith("/python")):
            words = words[1:]
        if not words:
            continue
        prog = words[0].rsplit("/", 1)[-1] if "/bin/" in words[0] or words[0].startswith(".venv") else words[0]
        if prog in CLIS or re.fullmatch(r"tools/\w+\.py", prog):
            out.append([prog, *words[1:]])
    return out


def _help_target(argv: list[str]) -> tuple[str, ...]:
    """The program (and subcommand) whose --help must list ARGV's options."""
    prog, rest = argv[0], [w for w in argv[1:] if not w.startswith("-") and not w.startswith("[")]
    if (prog == "emod" and rest) or (prog == "emod-view" and rest[:1] == ["passwd"]):
        return (prog, rest[0])
    return (prog,)


def test_every_readme_command_line_parses():
    """Each emod command in the README and the docs names a real program, subcommand and options: a renamed flag fails here."""
    cmds = readme_commands()
    assert len(cmds) >= 25, f"only {len(cmds)} commands found in the README and docs: the extraction broke"
    needs: dict[tuple[str, ...], set[str]] = {}
    for argv in cmds:
        target = _help_target(argv)
        flags = {m for w in argv[1:] for m in re.findall(r"(?<![\w-])--[a-z][\w-]*", w)}
        needs.setdefault(target, set()).update(flags)
        if target == ("emod-ctl",):
            needs[target].update(w for w in argv[1:2] if not w.startswith("-") and not w.startswith("["))
    procs = {}
    for target in needs:
        prog = [sys.executable, str(README.parent / target[0])] if target[0].startswith("tools/") else [str(BIN / target[0])]
        procs[target] = subprocess.Popen([*prog, *target[1:], "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, cwd=README.parent)
    bad = []
    for target, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            bad.append(f"{' '.join(target)} --help exits {proc.returncode}: {err.strip()[-300:]}")
            continue
        for word in sorted(needs[target]):
            if not re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", out):
                bad.append(f"{' '.join(target)}: the docs use {word}, which --help does not list")
    assert not bad, "\n".join(bad)


def test_python_m_emod_config_prints_the_table():
    """`python -m emod.config`, which the configuration page names as the table's generator, prints exactly that table."""
    r = subprocess.run([sys.executable, "-m", "emod.config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in CONFIG_PAGE.read_text() and r.stdout.count("\n") > 40
