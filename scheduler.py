"""Run the collector alone on its schedule (no Datasette): `python scheduler.py [--config] [--db]`.

`monitor run` (what `make run` starts) runs this plus Datasette.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from monitor.cli import DEFAULT_CONFIG, DEFAULT_DB, setup_logging
from monitor.errors import ConfigError, DatabaseError
from monitor.schedule import run_scheduler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--db", type=Path, default=DEFAULT_DB)
    args = parser.parse_args()
    setup_logging(1)
    try:
        asyncio.run(run_scheduler(args.config, args.db))
    except (ConfigError, DatabaseError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
