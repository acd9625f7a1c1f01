"""The "Model health" page (/review/health): drift and realised accuracy over time, from the
rows `churn monitor` writes to the store (scoring/health.py). The charts are pure functions
from numbers to inline SVG; the route only reads the rows and renders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scoring.health import HealthRow, read_health
from scoring.records import engine_for
from scoring.settings import get_settings
from serving.review.data import PageError

HISTORY = 52  # monitor runs shown at most
LINES = 6  # features drawn over time at most
TABLE_FEATURES = 12
COLOURS = ("#b91c1c", "#1d4ed8", "#b45309", "#7c3aed", "#0f766e", "#be185d", "#4b5563")
MONITOR_COMMAND = ("churn monitor --customers data/customers.parquet --events "
                   "data/events.parquet")


@dataclass(frozen=True)
class Series:
    name: str
    points: list[tuple[str, float | None]]  # (x label, value)


def _ticks(top: float) -> tuple[float, float]:
    """A round upper end and tick step (at most 5 steps) for values up to `top`."""
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0):
        if top <= 5 * step:
            break
    return max(step, -(-top // step) * step), step


def psi_svg(series: list[Series], threshold: float) -> Markup:
    """PSI over monitor runs, one line per series, with the flag threshold drawn."""
    labels = list(dict.fromkeys(x for s in series for x, _ in s.points))
    left, plot_w, plot_h, top, legend_w = 40, 290, 180, 16, 180
    width, height = left + plot_w + legend_w, top + plot_h + 40
    values = [v for s in series for _, v in s.points if v is not None]
    hi, step = _ticks(max([*values, threshold * 1.2]))

    def x(i: int) -> float:
        return left + (plot_w * (i + 0.5) / len(labels) if labels else 0)

    def y(v: float) -> float:
        return top + plot_h * (1 - min(v, hi) / hi)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart psi" role="img" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'aria-label="Population stability index of the most drifted features per monitor run">']
    k = 0.0
    while k <= hi + 1e-9:
        parts.append(f'<line x1="{left}" y1="{y(k):.1f}" x2="{left + plot_w}" y2="{y(k):.1f}" '
                     f'class="grid"/><text x="{left - 6}" y="{y(k) + 4:.1f}" class="tick" '
                     f'text-anchor="end">{k:g}</text>')
        k += step
    parts.append(f'<line x1="{left}" y1="{y(threshold):.1f}" x2="{left + plot_w}" '
                 f'y2="{y(threshold):.1f}" class="threshold"><title>flag threshold: PSI '
                 f'{threshold:g}</title></line>')
    every = max(1, len(labels) // 4)
    for i, label in enumerate(labels):
        if i % every == 0 or i == len(labels) - 1:
            parts.append(f'<text x="{x(i):.1f}" y="{top + plot_h + 16}" class="tick" '
                         f'text-anchor="middle">{escape(label[5:])}</text>')  # MM-DD
    for n, s in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        where = {label: i for i, label in enumerate(labels)}
        pts = [(x(where[lbl]), y(v), lbl, v) for lbl, v in s.points if v is not None]
        if len(pts) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                         f'stroke-width="2"/>')
        for px, py, lbl, v in pts:
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{colour}">'
                         f'<title>{escape(s.name)} on {escape(lbl)}: PSI {v:.3f}</title></circle>')
        ly = top + 14 + 18 * n
        parts.append(f'<rect x="{left + plot_w + 16}" y="{ly - 9}" width="10" height="10" '
                     f'fill="{colour}"/><text x="{left + plot_w + 32}" y="{ly}" class="label">'
                     f'{escape(s.name[:24])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def auc_svg(weeks: list[dict], test_low: float | None, test_high: float | None) -> Markup:
    """Realised ROC-AUC per week with its interval, over the band of the test interval."""
    rows = [w for w in weeks if w.get("roc_auc") is not None]
    left, plot_w, plot_h, top = 44, 440, 180, 16
    width, height = left + plot_w + 16, top + plot_h + 40
    lows = [w.get("roc_auc_low") or w["roc_auc"] for w in rows] + [test_low or 1.0]
    lo = max(0.0, min(lows) - 0.05)
    lo = int(lo * 20) / 20  # down to a multiple of 0.05
    span = 1.0 - lo

    def y(v: float) -> float:
        return top + plot_h * (1 - (min(max(v, lo), 1.0) - lo) / span)

    def x(i: int) -> float:
        return left + plot_w * (i + 0.5) / max(len(rows), 1)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart auc" role="img" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'aria-label="Realised ROC-AUC per week against the test interval">']
    if test_low is not None and test_high is not None:
        parts.append(f'<rect x="{left}" y="{y(test_high):.1f}" width="{plot_w}" '
                     f'height="{max(y(test_low) - y(test_high), 1):.1f}" class="band">'
                     f'<title>test interval {test_low:.3f} to {test_high:.3f}</title></rect>')
    t = lo
    while t <= 1.0 + 1e-9:
        parts.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{left + plot_w}" y2="{y(t):.1f}" '
                     f'class="grid"/><text x="{left - 6}" y="{y(t) + 4:.1f}" class="tick" '
                     f'text-anchor="end">{t:.2f}</text>')
        t += 0.05
    for i, w in enumerate(rows):
        auc = w["roc_auc"]
        low, high = w.get("roc_auc_low"), w.get("roc_auc_high")
        below = test_low is not None and auc < test_low
        if low is not None and high is not None:
            parts.append(f'<line x1="{x(i):.1f}" y1="{y(high):.1f}" x2="{x(i):.1f}" '
                         f'y2="{y(low):.1f}" class="whisker"/>')
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(auc):.1f}" r="4.5" '
                     f'class="week-auc{" below" if below else ""}"><title>week of '
                     f'{escape(str(w["week"]))}, version {escape(str(w.get("model_version")))}: '
                     f'ROC-AUC {auc:.3f} on {w.get("rows", 0):,} predictions</title></circle>')
        parts.append(f'<text x="{x(i):.1f}" y="{top + plot_h + 16}" class="tick" '
                     f'text-anchor="middle">{escape(str(w["week"])[5:])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass
class HealthView:
    latest: HealthRow | None
    runs: list[HealthRow]
    verdict: str
    psi_chart: Markup | None
    auc_chart: Markup | None
    top_drift: list[dict]
    threshold: float
    statuses: list[str] = field(default_factory=list)  # per run, in `runs` order
    status: str = ""  # the latest run's


def label_of(row: HealthRow | None, feature: str) -> str:
    """A feature in words, as the monitor stored it (`scoring.reasons.feature_label`); a run
    stored before labels existed gets the column name made readable."""
    stored = ((row.drift.get(feature) or {}).get("label") if row is not None else None)
    return stored or feature.replace("_", " ").capitalize()


def _series(runs: list[HealthRow]) -> list[Series]:
    """The score, then the features flagged in any run (most drifted last time first), up to
    LINES; with none flagged, the latest run's most drifted ones that can drift (not those
    that move with the calendar)."""
    latest = runs[-1]
    by_psi = sorted(latest.drift, key=lambda f: latest.drift[f].get("psi") or 0.0, reverse=True)
    ever = {f for r in runs for f in r.drift_flags}
    chosen = [f for f in by_psi if f in ever] + sorted(ever - set(by_psi))
    movable = [f for f in by_psi if not latest.drift[f].get("calendar")]
    chosen = (chosen or movable)[: LINES - 1]
    label = [r.as_of.strftime("%Y-%m-%d") for r in runs]
    series = [Series("Churn score", list(zip(label, [r.score_psi for r in runs], strict=True)))]
    for f in chosen:
        series.append(Series(label_of(latest, f), [(lbl, (r.drift.get(f) or {}).get("psi"))
                                                   for lbl, r in zip(label, runs, strict=True)]))
    return series


def judged(row: HealthRow, min_rows: int) -> tuple[bool, bool]:
    """(drift judged, realised accuracy judged): drift on enough predictions in the window
    (the monitor stores no drift otherwise), accuracy on at least `min_rows` predictions whose
    outcome is known. A ROC-AUC of two predictions judges nothing."""
    return bool(row.drift), row.realised_auc is not None and row.matured_rows >= min_rows


def status(row: HealthRow, min_rows: int) -> str:
    """A check in a word or three: needs attention, healthy, or how much was not judged."""
    if row.flagged:
        return "needs attention"
    drift, accuracy = judged(row, min_rows)
    if drift and accuracy:
        return "healthy"
    if drift:
        return "drift healthy, accuracy not judged"
    if accuracy:
        return "accuracy healthy, drift not judged"
    return "not judged"


def verdict(row: HealthRow | None, min_rows: int = 200) -> str:
    if row is None:
        return "No monitor run yet."
    when = f"{row.run_at:%Y-%m-%d %H:%M} UTC" if row.run_at else "the last run"
    drift, accuracy = judged(row, min_rows)
    few = (f"{row.drift_rows:,} predictions in its window and {row.matured_rows:,} with a known "
           f"outcome (at least {min_rows:,} are needed for each)")
    if not row.flagged and not drift and not accuracy:
        return (f"Not judged at the last check ({when}) of model version {row.model_version}: "
                f"{few} are too few.")
    if not row.flagged:
        if drift and accuracy:
            return (f"Healthy: nothing flagged at the last check ({when}) of model version "
                    f"{row.model_version}.")
        part, other = (("Today's customers look like the ones it was tested on", "whether its "
                        f"predictions came true is not judged yet: {row.matured_rows:,} with a "
                        f"known outcome, fewer than {min_rows:,}") if drift else
                       ("Its predictions came true as well as in its test", "whether today's "
                        f"customers look like the tested ones is not judged: {row.drift_rows:,} "
                        f"predictions in the window, fewer than {min_rows:,}"))
        return (f"Partly judged at the last check ({when}) of model version "
                f"{row.model_version}: {part}; {other}.")
    problems = []
    if row.drifted:
        names = ", ".join(label_of(row, f) for f in row.drift_flags[:5])
        names += " …" if len(row.drift_flags) > 5 else ""
        problems.append(f"{row.drifted} input{'s' if row.drifted != 1 else ''} changed ({names})")
    if row.score_flagged:
        problems.append("the scores drifted")
    if row.auc_flagged:
        problems.append(f"realised ROC-AUC {row.realised_auc:.3f} fell below the test interval "
                        f"({row.test_auc_low:.3f})")
    return f"Needs attention ({when}, model version {row.model_version}): " + "; ".join(problems) + "."


def health_view(runs: list[HealthRow], threshold: float, min_rows: int = 200) -> HealthView:
    latest = runs[-1] if runs else None
    if latest is None:
        return HealthView(None, [], verdict(None, min_rows), None, None, [], threshold)
    judged_runs = [r for r in runs if r.drift]
    psi_chart = psi_svg(_series(judged_runs), threshold) if judged_runs else None
    weeks = [w for w in latest.weeks if w.get("model_version") in (None, latest.model_version)]
    auc_chart = (auc_svg(weeks, latest.test_auc_low, latest.test_auc_high)
                 if any(w.get("roc_auc") is not None for w in weeks) else None)
    top = sorted(latest.drift.items(), key=lambda kv: kv[1].get("psi") or 0.0, reverse=True)
    rows = [{"feature": f, **v, "label": label_of(latest, f)} for f, v in top[:TABLE_FEATURES]]
    view = HealthView(latest, runs, verdict(latest, min_rows), psi_chart, auc_chart, rows,
                      threshold)
    view.statuses = [status(r, min_rows) for r in runs]
    view.status = status(latest, min_rows)
    return view


def health_routes(page: Callable, render: Callable[..., Response],
                  base_of: Callable[[Request], str]) -> list[Route]:
    """The health page's route, wrapped in the review app's `page` error handling and rendered
    with its `render`."""

    @page
    def health_page(request: Request) -> Response:
        if list(request.query_params):
            raise PageError(400, "Unknown parameter", "The health page takes no parameters.")
        settings = get_settings()
        try:
            runs = read_health(engine_for(settings), HISTORY, settings.model_name)
        except Exception as exc:
            raise PageError(503, "Store not available", "The store of monitor runs cannot be "
                            f"read ({type(exc).__name__}).") from None
        latest = runs[-1].psi_threshold if runs else None
        view = health_view(runs, latest or settings.monitor.psi, settings.monitor.min_rows)
        return render("health.html", base=base_of(request), view=view, command=MONITOR_COMMAND)

    return [Route("/health", health_page, methods=["GET"], name="health")]
