"""What staff and the website wait on: Datasette pages at 100K and 1M articles.

    python -m bench.pages_bench [--quick]

Each page is requested 20 times through Datasette's own client (in-process, so the figure is
Datasette plus SQLite, without the network) and the median and 95th percentile reported; the
baseline is the same page over a 10K-article store filled the same way.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.synthetic import VOCABULARY, quick_mode, results, store_of
from monitor.serve import build_datasette

PAGES = {
    "latest_headlines.json (public)": "/coverage/latest_headlines.json?_shape=array",
    "articles table, filtered": "/coverage/articles.json?outlet=Bench&_size=50",
    "articles _search": f"/coverage/articles.json?_search={VOCABULARY[50]}&_size=50",
    "ranked search (rare word)": f"/coverage/search.json?q={VOCABULARY[9000]}",
    "ranked search (common word)": f"/coverage/search.json?q={VOCABULARY[0]}",
    "todays_coverage": "/coverage/todays_coverage.json",
    "top_stories": "/coverage/top_stories.json",
    "campaign_mentions": "/coverage/campaign_mentions.json",
    "week_by_outlet": "/coverage/week_by_outlet.json",
}


def timings(size: int, directory: Path) -> dict[str, dict[str, float]]:
    path = directory / f"pages-{size}.db"
    # A relevant tenth (store_of), so the public and campaign pages have something to find.
    store_of(size, path).close()
    ds = build_datasette(path, {"MONITOR_SECRET": "bench"})
    cookies = {"ds_actor": ds.sign({"a": {"id": "bench"}}, "actor")}
    out = {}
    for name, page in PAGES.items():
        samples = []
        for _ in range(20):
            t0 = time.perf_counter()
            r = asyncio.run(ds.client.get(page, cookies=cookies))
            samples.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, (page, r.status_code, r.text[:300])
        samples.sort()
        out[name] = {
            "p50_ms": round(statistics.median(samples), 1),
            "p95_ms": round(samples[18], 1),
        }
    return out


def main() -> None:
    quick = quick_mode(__doc__, "10K and 100K only")
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    with tempfile.TemporaryDirectory() as tmp:
        figures = {size: timings(size, Path(tmp)) for size in sizes}
    print(f"{'page':32}" + "".join(f"{f'{s:,} p50/p95 ms':>24}" for s in sizes) + f"{'ratio':>8}")
    for name in PAGES:
        cells = "".join(
            f"{figures[s][name]['p50_ms']:>14} / {figures[s][name]['p95_ms']:<7}" for s in sizes
        )
        ratio = figures[sizes[-1]][name]["p50_ms"] / max(figures[sizes[0]][name]["p50_ms"], 0.1)
        print(f"{name:32}{cells}{ratio:>8.1f}")
    results(
        Path(__file__).with_name("results.json"), "pages", {str(s): f for s, f in figures.items()}
    )


if __name__ == "__main__":
    main()
