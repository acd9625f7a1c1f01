"""The reviewer page's routes, mounted on the service at /review. Each handler parses the
request, calls the pure functions of this package and renders a template; every template
autoescapes, because customer attributes are untrusted text.

- `/review/`: the customers of the latest scored batch (a `churn score` Parquet), ranked by
  expected value at risk, filterable by risk band and any categorical attribute.
- `/review/customer/<id>`: probability and band, the top reasons, a waterfall of the
  explanation, the recent timeline with warning signs, the suggested action and the model.

The files come from the settings (CHURN_REVIEW_SCORES, CHURN_REVIEW_CUSTOMERS,
CHURN_REVIEW_EVENTS, CHURN_REVIEW_PLAYBOOK).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from features.contract import CUSTOMER_ID, to_utc_naive
from scoring.settings import get_settings
from scoring.store import LoadedModel
from serving.review.data import PageError, current_data, current_playbook, current_scores
from serving.review.format import day
from serving.review.ranking import BANDS, at_risk_list, parse_list_query, segment_levels
from serving.review.views import customer_view

log = logging.getLogger(__name__)

SCORE_COMMAND = ("churn score --customers data/customers.parquet --events data/events.parquet "
                 "--as-of 2026-06-30 --out scores.parquet")

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent.parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True, lstrip_blocks=True,
)
_templates.filters.update(
    pct=lambda v: "" if v is None else f"{v:.1%}",
    money=lambda v: "–" if v is None else f"{v:,.2f}",
    day=day,
    quote=lambda v: quote(str(v), safe=""),
)


def render(template: str, status_code: int = 200, **context: object) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(template).render(**context), status_code=status_code)


def error_page(status: int, title: str, message: str, base: str = "") -> HTMLResponse:
    return render("error.html", status, title=title, message=message, status=status, base=base)


def _base(request: Request) -> str:
    """The path the review app is mounted at (e.g. /review), for links."""
    return request.scope.get("root_path", "").rstrip("/")


def _page(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """Turn PageError into its friendly page and anything unexpected into a plain 500 page."""

    def run(request: Request) -> Response:
        try:
            return handler(request)
        except PageError as exc:
            return error_page(exc.status, exc.title, exc.message, _base(request))
        except Exception:
            log.exception("review page %s failed", request.url.path)
            return error_page(500, "Something went wrong",
                              "The page could not be built. The error is in the service log.",
                              _base(request))

    run.__name__ = handler.__name__
    return run


def served_model() -> LoadedModel:
    """The model the service holds right now (it swaps in new versions without a restart)."""
    import bentoml

    try:
        return bentoml.get_current_service().holder.current
    except Exception as exc:
        raise PageError(503, "No model", f"The service has no model loaded yet ({exc}).") from None


@_page
def list_page(request: Request) -> Response:
    settings = get_settings()
    base = _base(request)
    scores = current_scores(settings)
    if scores is None:
        return render("no_scores.html", base=base, command=SCORE_COMMAND)
    playbook = current_playbook(settings)
    data = current_data(settings)
    customers = data.tables.customers if data else None
    levels = segment_levels(customers, data.tables.attributes.categorical if data else ())
    query = parse_list_query(request.query_params, levels, settings.review_page_size,
                             settings.review_max_page_size)
    view = at_risk_list(scores, customers, list(levels), query, playbook)
    return render("list.html", base=base, view=view, query=query, levels=levels, bands=BANDS,
                  scores_name=settings.review_scores.name, has_data=data is not None)


def _as_of(text: str) -> pd.Timestamp:
    try:
        when = to_utc_naive(text[:100])
    except (ValueError, OverflowError):
        raise PageError(400, "Bad date", f"as_of={text[:100]!r} is not a date.") from None
    # the page does date arithmetic and prints the results: keep to pandas' nanosecond range
    if not pd.Timestamp.min < when < pd.Timestamp.max:
        raise PageError(400, "Bad date", f"as_of={text[:100]!r} is outside the years 1678 "
                        "to 2261.")
    return when


@_page
def customer_page(request: Request) -> Response:
    settings = get_settings()
    customer_id = request.path_params["customer_id"]
    extra = [k for k in request.query_params if k != "as_of"]
    if extra:
        raise PageError(400, "Unknown parameter", f"The customer page takes only as_of, not {extra[0]!r}.")
    scores = current_scores(settings)
    batch_row = None
    if scores is not None:
        match = scores[scores[CUSTOMER_ID] == customer_id]
        batch_row = match.iloc[0].to_dict() if len(match) else None
    as_of_text = request.query_params.get("as_of", "").strip()
    data = current_data(settings)
    if as_of_text:
        as_of = _as_of(as_of_text)
    elif batch_row is not None:
        as_of = pd.Timestamp(batch_row["as_of"])
    elif scores is not None:
        if data is None or data.customer(customer_id).empty:
            raise PageError(404, "Unknown customer", f"There is no customer {customer_id!r}.")
        as_of = pd.Timestamp(pd.to_datetime(scores["as_of"]).max())
    else:
        raise PageError(400, "No date", "No scores are configured: give the date as ?as_of=YYYY-MM-DD.")
    if data is None:
        raise PageError(503, "Data not configured",
                        "Set CHURN_REVIEW_CUSTOMERS and CHURN_REVIEW_EVENTS to the data files to see "
                        "a customer's explanation and timeline.")
    view = customer_view(served_model(), data, customer_id, as_of, current_playbook(settings),
                         settings.offer, batch_row, settings.top_reasons, settings.risk_bands,
                         settings.review_waterfall_steps)
    return render("customer.html", base=_base(request), view=view)


# a file, not an inline script, so the Content-Security-Policy can forbid inline scripts
FILTERS_JS = """// filter as soon as a choice changes; the button still works without JavaScript
document.querySelectorAll("#filters select").forEach(function (s) {
  s.addEventListener("change", function () { s.form.submit(); });
});
"""


async def filters_js(request: Request) -> Response:
    return Response(FILTERS_JS, media_type="text/javascript",
                    headers={"Cache-Control": "max-age=3600"})


async def http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    if status == 404:
        return error_page(404, "Page not found", f"There is no page {request.url.path!r}.", _base(request))
    return error_page(status, "Request not allowed", str(getattr(exc, "detail", "")), _base(request))


review_app = Starlette(
    routes=[
        Route("/", list_page, methods=["GET"], name="list"),
        Route("/filters.js", filters_js, methods=["GET"], name="filters_js"),
        Route("/customer/{customer_id:path}", customer_page, methods=["GET"], name="customer"),
    ],
    exception_handlers={HTTPException: http_error},
)
