"""Full cycles of another commit's collector and this tree's, in turns, on the same loopback web.

    python -m bench.turns REV [--runs 3] [--feeds 1000]

The machine's speed drifts more than most changes do (the same code has taken 6.4 s and 15 s
for a cycle on different days), so a figure from another day says little about a change. Run
in turns, one after the other, old and new see the same stretch of the machine. REV is checked
out into a temporary git worktree and run with this environment's packages, so a REV that
needs other versions of them cannot be compared this way. Prints each pair and the medians.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.newsweb import ITEMS, NewsWeb
from bench.run import run_child, write_config

log = logging.getLogger("bench")
ROOT = Path(__file__).resolve().parent.parent

COLLECT = "import sys; sys.path.insert(0, sys.argv.pop(1)); from monitor.cli import main; main()"
"""`monitor collect` from the tree named first: its own package ahead of the installed one."""


def cycle(tree: Path, config: Path, db: Path) -> dict[str, float]:
    return run_child(
        [
            sys.executable,
            "-c",
            COLLECT,
            str(tree),
            "collect",
            "--config",
            str(config),
            "--db",
            str(db),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rev", help="the commit to compare this tree with")
    parser.add_argument("--runs", type=int, default=3, help="pairs of cycles (default 3)")
    parser.add_argument("--feeds", type=int, default=1000, help="changed feeds a cycle")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        added = subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old), args.rev],
            capture_output=True,
            text=True,
        )
        if added.returncode:
            raise SystemExit(f"cannot check out {args.rev!r}: {added.stderr.strip()}")
        web = NewsWeb(args.feeds)
        web.warm()
        web.start()
        try:
            config = write_config(web, args.feeds, Path(tmp))
            # Each tree's first cycle also compiles or loads its clusterer's loops: not timed.
            for tree in (old, ROOT):
                cycle(tree, config, Path(tmp) / f"warm-{tree.name}.db")
            pairs = []
            for n in range(args.runs):
                log.info("pair %d of %d", n + 1, args.runs)
                pairs.append([cycle(t, config, Path(tmp) / f"{t.name}{n}.db") for t in (old, ROOT)])
        finally:
            web.stop()
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)])
    items = args.feeds * ITEMS
    print(f"{'':6} {args.rev[:12]:>24} {'this tree':>24}")
    for n, (a, b) in enumerate(pairs, 1):
        print(
            f"pair {n} {a['wall_s']:>8} s {a['cpu_s']:>6} s CPU   {b['wall_s']:>8} s {b['cpu_s']:>6} s CPU"
        )
    medians = {
        key: [statistics.median(pair[i][key] for pair in pairs) for i in (0, 1)]
        for key in ("wall_s", "cpu_s")
    }
    for key, what in (("wall_s", "wall"), ("cpu_s", "CPU")):
        old_s, new_s = medians[key]
        print(f"median {what}: {old_s:.2f} s against {new_s:.2f} s: {new_s / old_s:.2f}x")
    old_wall, new_wall = medians["wall_s"]
    print(f"items/s: {items / old_wall:,.0f} against {items / new_wall:,.0f}")


if __name__ == "__main__":
    main()
