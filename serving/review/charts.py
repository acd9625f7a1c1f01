"""Charts as pure functions from numbers to inline SVG: no server, no state."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from html import escape

import pandas as pd
from markupsafe import Markup

from serving.review.timeline import TimelineData


@dataclass(frozen=True)
class Step:
    label: str
    detail: str
    start: float  # probability before this step
    end: float  # probability after it
    technical: str = ""  # the step in the model's own terms, for the "how is this computed" table



def _axis(top: float) -> tuple[float, float]:
    """A round upper end and tick step (at most 5 steps) for probabilities up to `top`."""
    for step in (0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.25):
        if top <= 5 * step:
            break
    return min(1.0, max(step, math.ceil(top / step - 1e-9) * step)), step


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


STARTING_POINT = "Model's starting point"


def waterfall_svg(p_base: float, steps: list[Step], p_final: float) -> Markup:
    """An inline SVG waterfall: base probability, one bar per step, the customer's probability."""
    label_w, plot_w, value_w, row_h, top = 380, 330, 80, 24, 28
    # the model's base value through its calibration: where the factors start, which is not
    # the average customer's probability (that averages the factors too)
    rows = [(STARTING_POINT, "before any of this customer's factors", 0.0, p_base, "base")]
    rows += [(s.label, s.detail, s.start, s.end, "up" if s.end >= s.start else "down") for s in steps]
    rows.append(("This customer", "their churn probability", 0.0, p_final, "total"))
    hi, step = _axis(max(max(r[2], r[3]) for r in rows) * 1.03)
    width, height = label_w + plot_w + value_w, top + row_h * len(rows) + 8

    def x(p: float) -> float:
        return label_w + plot_w * min(max(p, 0.0), hi) / hi

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart waterfall" role="img" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'aria-label="Waterfall of the churn probability, from {p_base:.1%} to {p_final:.1%}">']
    for k in range(round(hi / step) + 1):
        t = k * step
        parts.append(f'<line x1="{x(t):.1f}" y1="{top - 6}" x2="{x(t):.1f}" y2="{height - 8}" '
                     f'class="grid"/><text x="{x(t):.1f}" y="{top - 10}" class="tick" '
                     f'text-anchor="middle">{t * 100:g}%</text>')
    for i, (label, detail, start, end, kind) in enumerate(rows):
        y = top + i * row_h
        lo, hi_x = sorted((x(start), x(end)))
        delta = end - start
        value = f"{end:.1%}" if kind in ("base", "total") else f"{delta * 100:+.1f} pp"
        if value in ("+0.0 pp", "-0.0 pp"):  # a step too small to show its sign
            value = "±0.0 pp"
        parts.append(
            f'<g class="step {kind}"><title>{escape(label)}'
            f'{" (" + escape(detail) + ")" if detail else ""}: {start:.2%} → {end:.2%}</title>'
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" class="label">'
            f'{escape(_clip(label, 56))}</text>'
            f'<rect x="{lo:.1f}" y="{y + 4}" width="{max(hi_x - lo, 1.5):.1f}" height="{row_h - 8}"/>'
            f'<text x="{label_w + plot_w + 6}" y="{y + 16}" class="value">{escape(value)}</text></g>')
        if 0 < i < len(rows) - 1:  # connector to the next bar
            parts.append(f'<line x1="{x(end):.1f}" y1="{y + row_h - 4}" x2="{x(end):.1f}" '
                         f'y2="{y + row_h + 4}" class="connector"/>')
    parts.append("</svg>")
    return Markup("".join(parts))



SIGN_COLOURS = ("#b45309", "#b91c1c", "#7c3aed", "#0f766e", "#be185d", "#1d4ed8")


def timeline_svg(data: TimelineData) -> Markup:
    """Weekly activity bars (thinning weeks marked) above one lane of markers per warning sign."""
    left, plot_w, right, bars_h, lane_h, top = 230, 560, 30, 90, 22, 14
    width = left + plot_w + right
    height = top + bars_h + 24 + lane_h * len(data.summaries) + 24
    span = (data.as_of - data.start) / timedelta(days=1)

    def x(ts: pd.Timestamp) -> float:
        return left + plot_w * ((ts - data.start) / timedelta(days=1)) / span

    peak = max([w.activity for w in data.weeks] + [data.threshold, 1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart timeline" role="img" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'aria-label="Interaction timeline of the last {span:.0f} days">',
             f'<text x="{left - 8}" y="{top + 12}" text-anchor="end" class="label">Activity per week'
             f'</text><text x="{left - 8}" y="{top + 26}" text-anchor="end" class="tick">'
             f'peak {peak}</text>']
    base_y = top + bars_h
    for w in data.weeks:
        x0, x1 = x(w.start), x(w.start + timedelta(days=7))
        h = bars_h * w.activity / peak
        kind = "week thin" if w.thinning else "week"
        note = " (thinning out)" if w.thinning else ""
        parts.append(f'<rect class="{kind}" x="{x0 + 1:.1f}" y="{base_y - h:.1f}" '
                     f'width="{max(x1 - x0 - 2, 1):.1f}" height="{max(h, 0.5):.1f}"><title>week of '
                     f'{w.start:%Y-%m-%d}: {w.activity} activity '
                     f'{"event" if w.activity == 1 else "events"}{note}</title></rect>')
        if w.thinning:  # visible even when the week is empty
            parts.append(f'<rect class="week thin" x="{x0 + 1:.1f}" y="{base_y + 1}" '
                         f'width="{max(x1 - x0 - 2, 1):.1f}" height="4"/>')
    if data.threshold > 0:  # the rule, drawn: every bar that ends below this line is marked
        ty = base_y - bars_h * data.threshold / peak
        ratio = round(100 * data.threshold / data.usual)
        share = "half" if ratio == 50 else f"{ratio}%"
        parts.append(f'<line x1="{left}" y1="{ty:.1f}" x2="{left + plot_w}" y2="{ty:.1f}" '
                     f'class="threshold"><title>{share} of the usual week: {data.threshold:.2f} '
                     f'activity events</title></line>')
    parts.append(f'<line x1="{left}" y1="{base_y}" x2="{left + plot_w}" y2="{base_y}" class="axis"/>')
    for k in range(0, int(span) + 1, 30):  # month ticks counted back from as_of
        t = data.as_of - timedelta(days=k)
        parts.append(f'<text x="{x(t):.1f}" y="{base_y + 16}" text-anchor="middle" class="tick">'
                     f'{t:%b %d}</text>')
    lane0 = base_y + 24
    for i, lane in enumerate(data.summaries):
        y = lane0 + i * lane_h + lane_h / 2
        colour = SIGN_COLOURS[i % len(SIGN_COLOURS)]
        events = [s for s in data.signs if s.sign == lane.sign]
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" class="label">'
                     f'{escape(_clip(lane.label, 34))}</text><line x1="{left}" y1="{y:.1f}" '
                     f'x2="{left + plot_w}" y2="{y:.1f}" class="lane"/>')
        for s in events:
            parts.append(f'<circle class="sign" cx="{x(s.at):.1f}" cy="{y:.1f}" r="5" '
                         f'fill="{colour}"><title>{s.at:%Y-%m-%d %H:%M}: {escape(s.event_type)}'
                         f'</title></circle>')
    parts.append("</svg>")
    return Markup("".join(parts))

