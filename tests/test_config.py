"""Configuration: defaults, file, environment and command line, in that order of precedence; errors by name."""

import subprocess
import sys

import pytest

from emod import config


def test_precedence_cli_over_env_over_file_over_default(tmp_path):
    """Command line beats EMOD_* beats the file beats the default."""
    f = tmp_path / "emod.toml"
    f.write_text('[infer]\nthreads = 3\nmodel = "file"\n[capture]\nsource = "file.mp4"\n')
    cfg = config.load(f, env={"EMOD_INFER_MODEL": "env", "EMOD_CAPTURE_SOURCE": "env.mp4"}, overrides={"infer": {"model": "cli"}})
    assert cfg.infer.model == "cli" and cfg.capture.source == "env.mp4" and cfg.infer.threads == 3
    assert cfg.display.smoothing == "ema"  # default


@pytest.mark.parametrize("text, needle", [
    ("[infer]\nthread = 2\n", "unknown key infer.thread"),
    ("[nosuch]\n", "unknown section [nosuch]"),
    ('[infer]\nthreads = "two"\n', "infer.threads: expected int"),
    ('[power]\nbackend = "solar"\n', "power.backend: 'solar' is not one of"),
    ("[infer\n", "not valid TOML"),
])
def test_bad_files_name_key_and_reason(tmp_path, text, needle):
    """A bad config names the file, the key and the reason."""
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(config.ConfigError) as e:
        config.load(f, env={})
    assert needle in str(e.value) and str(f) in str(e.value)


def test_bad_environment_value_is_rejected():
    """An EMOD_* variable with a wrong type is refused by name."""
    with pytest.raises(config.ConfigError, match="infer.threads"):
        config.load(env={"EMOD_INFER_THREADS": "lots"})


def test_validate_exits_78_and_starts_nothing(tmp_path):
    """emod validate and emod run exit 78 on a bad file; run starts no stage."""
    f = tmp_path / "bad.toml"
    f.write_text("[capture]\nsorce = 1\n")
    v = subprocess.run([sys.executable, "-m", "emod.cli.main", "validate", str(f)], capture_output=True, text=True)
    assert v.returncode == 78 and "capture.sorce" in v.stderr
    r = subprocess.run([sys.executable, "-m", "emod.cli.main", "run", "--config", str(f), "--runtime-dir", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78 and "capture.sorce" in r.stderr
    assert not (tmp_path / "r").exists()


def test_default_file_is_valid_and_documents_every_option(tmp_path):
    """The installer's default file parses, and the reference table lists every option."""
    f = tmp_path / "emod.toml"
    f.write_text(config.default_toml())
    assert config.load(f, env={}) == config.Config()
    ref = config.reference()
    for section in config.SECTIONS:
        for name in config.Config().to_dict()[section]:
            assert f"`{section}.{name}`" in ref


def test_signed_and_unsigned_numbers():
    """haar_min_score may be negative (cascade confidences are); other numbers may not."""
    assert config.load(env={"EMOD_INFER_HAAR_MIN_SCORE": "-100"}).infer.haar_min_score == -100.0
    with pytest.raises(config.ConfigError, match="infer.haar_neighbors: must not be negative"):
        config.load(env={"EMOD_INFER_HAAR_NEIGHBORS": "-1"})
