"""Small charts as inline SVG strings, drawn on the server: no JavaScript, no CDN, no matplotlib.

Pure computation (no ORM, no Django): the admin's model-version page draws its metrics with
these. Every chart is an ``<svg role="img">`` labelled by its ``<title>`` and a ``<desc>``
that says its numbers in words (what a screen reader reads), and each mark has its own
``<title>`` (the exact value on hover). Text and axes use ``currentColor`` so the charts
follow the page's light or dark theme. Values that are missing or not finite are left out;
a chart with nothing to draw says so instead of drawing empty axes.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

#: Fill of ordinary and highlighted marks (CSS variables of Django's admin, with fallbacks).
FILL = "var(--visrec-chart-fill, #79aec8)"
HIGHLIGHT = "var(--visrec-chart-highlight, #417690)"
TARGET = "var(--visrec-chart-target, #ba2121)"
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


@dataclass(frozen=True)
class Bar:
    """One bar: ``value`` with an optional interval ``low``-``high`` drawn as a whisker."""

    label: str
    value: float
    low: float | None = None
    high: float | None = None
    highlight: bool = False


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _fmt(x: float, digits: int = 3) -> str:
    text = f"{x:.{digits}f}"
    return text.replace("-", "\u2212")


def _chart_id(*parts) -> str:
    return "visrec-chart-" + hashlib.sha1(repr(parts).encode()).hexdigest()[:10]


def _open(title: str, description: str, width: int, height: int, key) -> str:
    chart = _chart_id(title, description, key)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="visrec-chart" role="img" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" aria-labelledby="{chart}-t {chart}-d">'
            f'<title id="{chart}-t">{escape(title)}</title><desc id="{chart}-d">{escape(description)}</desc>')


def _empty(title: str, reason: str, width: int = 320, height: int = 60) -> str:
    return (_open(title, reason, width, height, "empty")
            + f'<text x="8" y="{height // 2}" fill="currentColor" {FONT}>{escape(reason)}</text></svg>')


def _nice_max(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^n at or above ``value`` (an axis that ends on a round number)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value - 1e-12:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def bar_chart(title: str, bars: Sequence[Bar], *, y_label: str = "", y_max: float | None = None,
              digits: int = 3, width: int = 420, height: int = 220) -> str:
    """Vertical bars with optional interval whiskers; the axis starts at 0.

    Args:
        title: what the chart shows (its accessible name).
        bars: the bars, left to right; bars whose value is not a finite number are left out.
        y_label: the measure, e.g. ``"Recall@20"``.
        y_max: the axis' top (default: a round number above the largest value or whisker).
        digits: decimals of the values written above the bars and in the description.
    """
    shown = [b for b in bars if _finite(b.value)]
    if not shown:
        return _empty(title, "no values to draw")
    tops = [b.value for b in shown] + [b.high for b in shown if _finite(b.high)]
    top = y_max if _finite(y_max) and y_max > 0 else _nice_max(max(max(tops), 0.0))
    left, right, upper, lower = 44, 8, 18, 42
    plot_w, plot_h = width - left - right, height - upper - lower

    def y(v: float) -> float:
        return upper + plot_h * (1 - min(max(v, 0.0), top) / top)

    words = []
    for b in shown:
        interval = (f" (95% interval {_fmt(b.low, digits)} to {_fmt(b.high, digits)})"
                    if _finite(b.low) and _finite(b.high) else "")
        words.append(f"{b.label}: {_fmt(b.value, digits)}{interval}")
    out = [_open(title, f"{y_label + ' — ' if y_label else ''}{'; '.join(words)}.", width, height,
                 [(b.label, b.value, b.low, b.high) for b in shown])]
    for tick in (0.0, top / 2, top):  # axis with three ticks
        ty = y(tick)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="currentColor" '
                   f'stroke-opacity="{0.6 if tick == 0 else 0.15}"/>')
        out.append(f'<text x="{left - 4}" y="{ty + 4:.1f}" text-anchor="end" fill="currentColor" {FONT}>'
                   f'{_fmt(tick, 2)}</text>')
    if y_label:
        out.append(f'<text x="10" y="{upper + plot_h / 2:.1f}" transform="rotate(-90 10 {upper + plot_h / 2:.1f})" '
                   f'text-anchor="middle" fill="currentColor" {FONT}>{escape(y_label)}</text>')
    slot = plot_w / len(shown)
    bar_w = min(56.0, slot * 0.6)
    for i, (b, word) in enumerate(zip(shown, words)):
        cx = left + slot * (i + 0.5)
        by = y(b.value)
        fill = HIGHLIGHT if b.highlight else FILL
        out.append(f'<g class="visrec-bar"><title>{escape(word)}</title>'
                   f'<rect x="{cx - bar_w / 2:.1f}" y="{by:.1f}" width="{bar_w:.1f}" '
                   f'height="{upper + plot_h - by:.1f}" style="fill:{fill}"/>')
        label_y = by - 4
        if _finite(b.low) and _finite(b.high):
            ly, hy = y(b.low), y(b.high)
            out.append(f'<path d="M{cx:.1f},{ly:.1f}V{hy:.1f}M{cx - 6:.1f},{ly:.1f}h12M{cx - 6:.1f},{hy:.1f}h12" '
                       f'stroke="currentColor" stroke-width="1.5" fill="none" class="visrec-whisker"/>')
            label_y = min(label_y, hy - 4)
        out.append(f'<text x="{cx:.1f}" y="{max(label_y, 10):.1f}" text-anchor="middle" fill="currentColor" '
                   f'{FONT}>{_fmt(b.value, digits)}</text></g>')
        out.append(f'<text x="{cx:.1f}" y="{height - lower + 14}" text-anchor="middle" fill="currentColor" '
                   f'{FONT}>{escape(_clip(b.label, int(slot / 6)))}</text>')
    out.append("</svg>")
    return "".join(out)


def line_chart(title: str, points: Sequence[tuple[float, float]], *, x_label: str = "", y_label: str = "",
               target: float | None = None, highlight_x: float | None = None, log_x: bool = False,
               y_range: tuple[float, float] | None = None, digits: int = 3, width: int = 420,
               height: int = 220) -> str:
    """A line through ``points`` (sorted by x), with dots, an optional horizontal target line
    and one highlighted point (e.g. the chosen ``ef_search``).

    Args:
        points: ``(x, y)`` pairs; pairs with a non-finite coordinate are left out.
        log_x: a logarithmic x axis (for ef_search's doubling steps); x must then be positive.
        y_range: the y axis' ends (default: the data's, widened to include ``target``).
    """
    shown = sorted((float(x), float(v)) for x, v in points if _finite(x) and _finite(v) and (x > 0 or not log_x))
    if not shown:
        return _empty(title, "no values to draw")
    left, right, upper, lower = 48, 12, 14, 40
    plot_w, plot_h = width - left - right, height - upper - lower
    xs = [math.log10(x) if log_x else x for x, _ in shown]
    x0, x1 = min(xs), max(xs)
    values = [v for _, v in shown] + ([target] if _finite(target) else [])
    if y_range and all(_finite(v) for v in y_range) and y_range[1] > y_range[0]:
        y0, y1 = y_range
    else:
        y0, y1 = min(values), max(values)
        if y1 - y0 < 1e-9:
            y0, y1 = y0 - 0.05, y1 + 0.05
        pad = (y1 - y0) * 0.1
        y0, y1 = y0 - pad, y1 + pad

    def px(x: float) -> float:
        value = math.log10(x) if log_x else x
        return left + (plot_w / 2 if x1 == x0 else plot_w * (value - x0) / (x1 - x0))

    def py(v: float) -> float:
        return upper + plot_h * (1 - (v - y0) / (y1 - y0))

    words = "; ".join(f"{_fmt(x, 0) if float(x).is_integer() else _fmt(x, 2)}: {_fmt(v, digits)}" for x, v in shown)
    extra = f"; target {_fmt(target, digits)}" if _finite(target) else ""
    out = [_open(title, f"{y_label} by {x_label}: {words}{extra}.", width, height, (shown, target, highlight_x))]
    for tick in (y0, (y0 + y1) / 2, y1):
        ty = py(tick)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="currentColor" '
                   f'stroke-opacity="0.15"/><text x="{left - 4}" y="{ty + 4:.1f}" text-anchor="end" '
                   f'fill="currentColor" {FONT}>{_fmt(tick, digits)}</text>')
    if _finite(target) and y0 <= target <= y1:
        ty = py(target)
        out.append(f'<g class="visrec-target"><title>target {_fmt(target, digits)}</title>'
                   f'<line x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}" style="stroke:{TARGET}" '
                   f'stroke-dasharray="4 3"/></g>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{px(x):.1f},{py(v):.1f}" for i, (x, v) in enumerate(shown))
    out.append(f'<path d="{path}" fill="none" style="stroke:{HIGHLIGHT}" stroke-width="2"/>')
    for x, v in shown:
        chosen = _finite(highlight_x) and abs(x - highlight_x) < 1e-9
        label = f"{x_label} {_fmt(x, 0) if float(x).is_integer() else _fmt(x, 2)}: {y_label} {_fmt(v, digits)}"
        out.append(f'<g class="visrec-point"><title>{escape(label + (" (chosen)" if chosen else ""))}</title>'
                   f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="{5 if chosen else 3}" '
                   f'style="fill:{TARGET if chosen else HIGHLIGHT}"/></g>')
        out.append(f'<text x="{px(x):.1f}" y="{height - lower + 14}" text-anchor="middle" fill="currentColor" '
                   f'{FONT}>{_fmt(x, 0) if float(x).is_integer() else _fmt(x, 2)}</text>')
    if x_label:
        out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" fill="currentColor" '
                   f'{FONT}>{escape(x_label)}</text>')
    if y_label:
        out.append(f'<text x="10" y="{upper + plot_h / 2:.1f}" transform="rotate(-90 10 {upper + plot_h / 2:.1f})" '
                   f'text-anchor="middle" fill="currentColor" {FONT}>{escape(y_label)}</text>')
    out.append("</svg>")
    return "".join(out)


def interval_chart(title: str, value: float, low: float, high: float, *, label: str = "difference",
                   digits: int = 3, width: int = 420, height: int = 76) -> str:
    """One estimate with its interval on a horizontal axis around zero (a paired difference:
    left of the zero line is worse, right is better)."""
    if not (_finite(value) and _finite(low) and _finite(high)):
        return _empty(title, "no interval to draw")
    low, high = min(low, high), max(low, high)
    reach = max(abs(low), abs(high), abs(value), 1e-6) * 1.15
    left, right = 60, 60
    plot_w = width - left - right
    mid = 34

    def px(v: float) -> float:
        return left + plot_w * (v + reach) / (2 * reach)

    words = f"{label} {_fmt(value, digits)}, 95% interval {_fmt(low, digits)} to {_fmt(high, digits)}"
    side = ("the whole interval is below zero (worse)" if high < 0 else
            "the whole interval is above zero (better)" if low > 0 else "the interval includes zero")
    out = [_open(title, f"{words}: {side}.", width, height, (value, low, high))]
    out.append(f'<line x1="{px(0):.1f}" x2="{px(0):.1f}" y1="{mid - 8}" y2="{mid + 14}" stroke="currentColor" '
               f'stroke-opacity="0.6"/><text x="{px(0):.1f}" y="{height - 6}" text-anchor="middle" '
               f'fill="currentColor" {FONT}>0</text>')
    out.append(f'<text x="{left - 6}" y="{mid + 4}" text-anchor="end" fill="currentColor" {FONT}>worse</text>'
               f'<text x="{width - right + 6}" y="{mid + 4}" fill="currentColor" {FONT}>better</text>')
    out.append(f'<g class="visrec-interval"><title>{escape(words)}</title>'
               f'<path d="M{px(low):.1f},{mid}H{px(high):.1f}M{px(low):.1f},{mid - 6}v12M{px(high):.1f},{mid - 6}v12" '
               f'stroke="currentColor" stroke-width="1.5" fill="none"/>'
               f'<circle cx="{px(value):.1f}" cy="{mid}" r="5" style="fill:{HIGHLIGHT}"/></g>')
    ends = (low,) if px(high) - px(low) < 36 else (low, high)  # one label where the ends would overlap
    for v in ends:
        out.append(f'<text x="{px(v):.1f}" y="{mid - 10}" text-anchor="middle" fill="currentColor" {FONT}>'
                   f'{_fmt(v, digits)}{"" if len(ends) == 2 or high == low else f" to {_fmt(high, digits)}"}</text>')
    out.append("</svg>")
    return "".join(out)


def _clip(text: str, size: int) -> str:
    size = max(size, 4)
    return text if len(text) <= size else text[:size - 1] + "…"
