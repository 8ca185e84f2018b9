"""``emod doctor [--json]``: check what emod needs on this machine; one line per check, with the fix; exit 1 when something stops emod."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from emod import config
from emod.cli.install_systemd import DEFAULT_CONFIG, DEFAULT_UNIT_DIR
from emod.cli.pipe import reader_gone


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="emod doctor", description=__doc__.split(":", 1)[1].strip())
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--config", help=f"config file to check (default {DEFAULT_CONFIG} when it exists, else the defaults)")
    p.add_argument("--unit-dir", default=DEFAULT_UNIT_DIR, help="where the systemd unit is installed (default %(default)s)")
    args = p.parse_args(argv)
    from emod.doctor import Context, as_json, as_text, exit_code, run_checks

    path = args.config or (DEFAULT_CONFIG if os.path.isfile(DEFAULT_CONFIG) else None)
    error = None
    try:
        cfg = config.load(path)
    except config.ConfigError as e:
        error, cfg = str(e), config.load(None)
    results = run_checks(Context(path, cfg, error, Path(args.unit_dir)))
    try:
        if args.json:
            print(json.dumps(as_json(results), indent=2, default=str))
        else:
            print(as_text(results))
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (| head): the verdict still counts
        reader_gone()
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
