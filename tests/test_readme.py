"""The README stays true to the code it documents."""

from pathlib import Path

from emod import config

README = Path(__file__).resolve().parents[1] / "README.md"


def test_config_table_matches_the_config_models():
    """The README's option table is exactly what the config dataclasses generate."""
    assert config.reference() in README.read_text()


def test_quick_start_commands_exist():
    """The Quick start's two commands are Makefile targets."""
    text = README.read_text()
    make = (README.parent / "Makefile").read_text()
    assert "make run" in text and "make test" in text
    assert "\nrun:" in make and "\ntest:" in make
