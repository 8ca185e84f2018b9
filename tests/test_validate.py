"""Validation checks everything it can, and reports every error at once (issue 14, kind 9)."""

from __future__ import annotations

import subprocess

import pytest

from _fixtures import EMOD, base_env, short_tmp, tiny_models  # noqa: F401
from emod import config, protocol


def validate(path, models, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(EMOD), "validate", str(path)], env=base_env(models, **env), capture_output=True, text=True, timeout=60)


def test_an_unknown_model_name_is_refused(short_tmp, tiny_models) -> None:
    """`model = "ful"` fails validation (78) and the message lists the models that exist."""
    f = short_tmp / "emod.toml"
    f.write_text('[infer]\nmodel = "ful"\n')
    r = validate(f, tiny_models)
    assert r.returncode == protocol.EXIT_CONFIG and "'ful'" in r.stderr and "full" in r.stderr and "tiny" in r.stderr


@pytest.mark.parametrize("var, value, needle", [
    ("EMOD_INFER_MODLE", "full", "did you mean EMOD_INFER_MODEL"),
    ("EMOD_CAPTURE_FPS", "abc", "'abc' is not a valid float"),
    ("EMOD_DISPLAY_JPEG_QUALITY", "500", "jpeg_quality must be 1..100"),
    ("EMOD_DAEMON_LOG_LEVEL", "loud", "not one of"),
])
def test_every_emod_variable_is_checked(short_tmp, tiny_models, var, value, needle) -> None:
    """A misspelt EMOD_* variable, or one with a bad value, fails validation (and `emod run`) with exit 78."""
    f = short_tmp / "emod.toml"
    f.write_text("")
    r = validate(f, tiny_models, **{var: value})
    assert r.returncode == protocol.EXIT_CONFIG and var.split("_", 1)[1].split("_")[0].lower() in r.stderr.lower()
    assert needle in r.stderr, r.stderr
    run = subprocess.run([str(EMOD), "run", "--runtime-dir", str(short_tmp / "r"), "--source", "demo"],
                         env=base_env(tiny_models, **{var: value}), capture_output=True, text=True, timeout=60)
    assert run.returncode == protocol.EXIT_CONFIG and needle in run.stderr


def test_all_errors_are_reported_at_once(short_tmp, tiny_models) -> None:
    """A file with several mistakes plus a bad variable gets one line per mistake, not just the first."""
    f = short_tmp / "emod.toml"
    f.write_text('[infer]\nmodel = "ful"\nmax_faces = "eight"\n[capture]\nsorce = "demo"\n[dispaly]\nwindow = "on"\n')
    r = validate(f, tiny_models, EMOD_CAPTURE_FPS="abc")
    assert r.returncode == protocol.EXIT_CONFIG
    for needle in ("infer.max_faces", "capture.sorce (did you mean source?)", "[dispaly]", "capture.fps", "'ful'"):
        assert needle in r.stderr, (needle, r.stderr)
    assert "(5 errors)" in r.stderr


def test_load_collects_every_error() -> None:
    """config.load raises one ConfigError whose lines name every problem, in file, environment and cross-key checks."""
    with pytest.raises(config.ConfigError) as e:
        config.load(None, env={"EMOD_INFER_THREADS": "0", "EMOD_POWER_PERIOD": "x", "EMOD_NOPE": "1"})
    lines = str(e.value).splitlines()
    assert len(lines) == 3 and any("EMOD_NOPE" in ln for ln in lines) and any("threads" in ln for ln in lines)
    assert config.load(None, env={"EMOD_RUNTIME_DIR": "/tmp/x", "EMOD_MODELS_DIR": "/m"}).daemon.runtime_dir == "/tmp/x"


def test_a_saved_model_choice_overriding_the_config_is_logged(short_tmp, tiny_models) -> None:
    """When the saved set-model choice replaces the config's model, `emod run` says so in its log."""
    state = short_tmp / "st"
    state.mkdir()
    (state / "model").write_text("tiny\n")
    r = subprocess.run([str(EMOD), "run", "--runtime-dir", str(short_tmp / "r"), "--state-dir", str(state), "--source", "demo",
                        "--duration", "1"], env=base_env(tiny_models, EMOD_INFER_MODEL="quant"), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if "saved model choice overrides the config" in ln)
    assert '"model": "tiny"' in line and '"config_model": "quant"' in line
