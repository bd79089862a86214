"""Small SVG charts drawn on the server: coverage per day by topic, and outlet share.

Plain SVG strings with every label escaped: no JavaScript, no chart library from a CDN (the
staff pages must work on a locked-down network and never run third-party code).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def daily_chart(rows: Sequence[Mapping[str, object]], height: int = 260) -> str:
    """Stacked bars of articles per day, one colour per topic; stories per day as a line."""
    days = sorted({str(r["day"]) for r in rows})
    topics = sorted({str(r["topic"]) for r in rows})
    if not days:
        return '<p class="chart-empty">No relevant coverage in this period yet.</p>'
    articles = {(str(r["day"]), str(r["topic"])): int(str(r["articles"])) for r in rows}
    stories = {d: 0 for d in days}
    for r in rows:
        stories[str(r["day"])] = max(stories[str(r["day"])], int(str(r["stories"])))
    totals = [sum(articles.get((d, t), 0) for t in topics) for d in days]
    top = max(max(totals), 1)
    bar, gap, left, bottom = 22, 6, 40, 30
    width = max(left + len(days) * (bar + gap) + 20, 360)  # room for the legend
    scale = (height - bottom - 20) / top
    parts = [
        f'<svg role="img" aria-label="Relevant articles per day by topic" '
        f'viewBox="0 0 {width} {height + 20 * len(topics)}" width="{width}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">',
        f'<text x="4" y="14">{top}</text>',
        f'<line x1="{left - 4}" y1="{height - bottom}" x2="{width}" y2="{height - bottom}" '
        'stroke="#999"/>',
    ]
    points = []
    for i, day in enumerate(days):
        x = left + i * (bar + gap)
        y: float = height - bottom
        for j, topic in enumerate(topics):
            count = articles.get((day, topic), 0)
            if count:
                h = count * scale
                y -= h
                parts.append(
                    f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{h:.1f}" '
                    f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(day)} '
                    f"{escape(topic)}: {count} articles</title></rect>"
                )
        points.append(f"{x + bar / 2:.1f},{height - bottom - stories[day] * scale:.1f}")
        if i % max(1, len(days) // 10) == 0:
            parts.append(f'<text x="{x}" y="{height - bottom + 14}">{escape(day[5:])}</text>')
    parts.append(
        f'<polyline points="{" ".join(points)}" fill="none" stroke="#000" stroke-width="1.5">'
        "<title>stories per day</title></polyline>"
    )
    for j, topic in enumerate(topics):
        y = height + 14 + 20 * j
        parts.append(
            f'<rect x="{left}" y="{y - 10}" width="12" height="12" '
            f'fill="{PALETTE[j % len(PALETTE)]}"/><text x="{left + 18}" y="{y}">'
            f"{escape(topic)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(values: Sequence[tuple[str, int]], width: int = 520) -> str:
    """Horizontal bars with labels and shares, largest first."""
    if not values:
        return '<p class="chart-empty">No relevant coverage in this period yet.</p>'
    total = sum(v for _, v in values) or 1
    top = max(v for _, v in values) or 1
    row, label = 22, 170
    parts = [
        f'<svg role="img" aria-label="Share of relevant articles by outlet" '
        f'viewBox="0 0 {width} {row * len(values) + 10}" width="{width}" '
        'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="12">'
    ]
    for i, (name, count) in enumerate(values):
        y = i * row + 4
        w = (width - label - 90) * count / top
        parts.append(
            f'<text x="0" y="{y + 13}">{escape(name)}</text>'
            f'<rect x="{label}" y="{y}" width="{w:.1f}" height="16" fill="{PALETTE[0]}"/>'
            f'<text x="{label + w + 6:.1f}" y="{y + 13}">{count} '
            f"({100 * count / total:.0f}%)</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
