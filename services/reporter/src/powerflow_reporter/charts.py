"""Small SVG charts drawn from the facts' tables (no plotting library: worker images stay lean)."""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from powerflow_reporter.fonts import FONT_FAMILY

__all__ = ["bar_chart", "scatter_chart"]

_W, _H = 640, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 14, 40
_BAR = "#2f7d5b"
_AXIS = "#555"


def _ticks(top: float) -> list[float]:
    if top <= 0:
        return [0.0]
    return [top * i / 4 for i in range(5)]


def _frame(title: str, y_label: str, y_max: float, body: list[str], x_labels: list[str]) -> str:
    plot_h = _H - _TOP - _BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="{_W}" '
        f'height="{_H}" role="img" aria-label="{escape(title)}" font-size="10" '
        # WeasyPrint draws SVG text from the SVG's own attributes, not the PDF stylesheet: the
        # packaged family first (a browser without it falls back to its sans-serif).
        f'font-family="{FONT_FAMILY}, sans-serif">',
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_W - _RIGHT}" y2="{_TOP + plot_h}" '
        f'stroke="{_AXIS}"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + plot_h}" stroke="{_AXIS}"/>',
    ]
    for tick in _ticks(y_max):
        y = _TOP + plot_h - (tick / y_max * plot_h if y_max > 0 else 0)
        parts.append(
            f'<text x="{_LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{tick:,.4g}</text>'
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" stroke="#ddd"/>'
        )
    mid = _TOP + plot_h / 2
    parts.append(
        f'<text x="12" y="{mid:.0f}" transform="rotate(-90 12 {mid:.0f})"'
        f' text-anchor="middle">{escape(y_label)}</text>'
    )
    parts.extend(body)
    parts.extend(x_labels)
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    title: str, labels: Sequence[str], values: Sequence[float | None], y_label: str
) -> str:
    """Vertical bars, one per label; None draws nothing."""
    n = max(1, len(values))
    y_max = max([v for v in values if v is not None] or [0.0]) * 1.05
    plot_w = _W - _LEFT - _RIGHT
    plot_h = _H - _TOP - _BOTTOM
    slot = plot_w / n
    body: list[str] = []
    x_labels: list[str] = []
    every = max(1, n // 12)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = _LEFT + i * slot
        if value is not None and y_max > 0:
            h = value / y_max * plot_h
            body.append(
                f'<rect x="{x + slot * 0.1:.1f}" y="{_TOP + plot_h - h:.1f}" '
                f'width="{slot * 0.8:.1f}" height="{h:.1f}" fill="{_BAR}"/>'
            )
        if i % every == 0:
            x_labels.append(
                f'<text x="{x + slot / 2:.1f}" y="{_H - _BOTTOM + 14}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    return _frame(title, y_label, y_max, body, x_labels)


def scatter_chart(
    title: str, points: Sequence[tuple[float, float]], x_label: str, y_label: str
) -> str:
    """Points of (x, y); the x axis spans the data's range."""
    if not points:
        return _frame(title, y_label, 0.0, [], [])
    xs = [p[0] for p in points]
    x_min, x_max = min(xs), max(xs)
    span = (x_max - x_min) or 1.0
    y_max = max(p[1] for p in points) * 1.05 or 1.0
    plot_w = _W - _LEFT - _RIGHT
    plot_h = _H - _TOP - _BOTTOM
    body = [
        f'<circle cx="{_LEFT + (x - x_min) / span * plot_w:.1f}" '
        f'cy="{_TOP + plot_h - y / y_max * plot_h:.1f}" r="2" fill="{_BAR}" fill-opacity="0.6"/>'
        for x, y in points
    ]
    x_labels = [
        f'<text x="{_LEFT + i / 4 * plot_w:.1f}" y="{_H - _BOTTOM + 14}" text-anchor="middle">'
        f"{x_min + span * i / 4:,.1f}</text>"
        for i in range(5)
    ]
    x_labels.append(
        f'<text x="{_LEFT + plot_w / 2:.0f}" y="{_H - 6}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    return _frame(title, y_label, y_max, body, x_labels)
