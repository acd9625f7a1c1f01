"""The reviewer page's routes, mounted on the service at /review. Each handler parses the
request, calls the pure functions of this package and renders a template; every template
autoescapes, because customer attributes are untrusted text.

- `/review/`: the customers of the latest scored batch (a `churn score` Parquet), ranked by
  expected value at risk; search by id, filter by risk band, any categorical attribute and
  "new since the previous batch", sort by a column, page through; the risk over the last
  batches; which model scored the list and which one the service holds.
- `/review/export.csv`: the filtered list as CSV (at most `review_export_max_rows` rows).
- `POST /review/rescore`: score the list again with the live model (the old file is kept as an
  earlier batch; see serving/review/data.py).
- `/review/customer/<id>`: probability and band, what changed and who they are, a waterfall of
  the explanation, the recent timeline with warning signs, the suggested action, the contacts
  recorded so far and a form to record one.
- `POST /review/contacts`: record a contact (owner, note, outcome) in the product's store
  (scoring/records.py); a bad field is a 400 naming it.

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
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from features.contract import CUSTOMER_ID, to_utc_naive
from scoring.records import (
    OUTCOMES,
    RecordError,
    add_contact,
    check_contact,
    contacts_of,
    engine_for,
    latest_contacts,
)
from scoring.settings import Settings, get_settings
from scoring.store import LoadedModel
from serving.errors import error_body
from serving.review.campaigns import campaign_routes, history_or_none
from serving.review.data import (
    PageError,
    current_data,
    current_playbook,
    current_scores,
    earlier_batches,
    rescore,
)
from serving.review.format import day, money, value_definition
from serving.review.health import health_routes
from serving.review.ranking import (
    BANDS,
    SORTS,
    at_risk_list,
    export_rows,
    filtered,
    parse_list_query,
    segment_levels,
)
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
    money=money,
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
        except RecordError as exc:
            return _bad_field(request, exc)
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


def _bad_field(request: Request, exc: RecordError) -> Response:
    """A 400 naming the field: JSON for a client that asks for it, else a page."""
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "text/html" not in accept:
        return JSONResponse(error_body(exc.message, exc.field), status_code=400)
    return error_page(400, f"Check the {exc.field.replace('_', ' ')}",
                      f"{exc.field}: {exc.message}.", _base(request))


def live_model() -> LoadedModel | None:
    try:
        return served_model()
    except PageError:
        return None


def _value_words(settings: Settings) -> tuple[str, str]:
    return value_definition(settings.offer.value_column, settings.offer.value_multiplier)


def _trend(scores: pd.DataFrame, batches: list) -> list[dict]:
    """Per batch, oldest first and the current one last: date, model, size, high band, mean."""
    out = []
    for frame, current in [*((b.frame, False) for b in batches), (scores, True)]:
        p = frame["churn_probability"]
        out.append({"as_of": day(pd.to_datetime(frame["as_of"]).max()),
                    "models": ", ".join(sorted(frame["model_version"].astype(str).unique())),
                    "scored": len(frame), "high": int((frame["risk_band"] == "high").sum()),
                    "mean": float(p.mean()) if len(p) else None, "current": current})
    return out


def _list_inputs(request: Request, settings: Settings):
    scores = current_scores(settings)
    if scores is None:
        return None
    data = current_data(settings)
    customers = data.tables.customers if data else None
    levels = segment_levels(customers, data.tables.attributes.categorical if data else ())
    query = parse_list_query(request.query_params, levels, settings.review_page_size,
                             settings.review_max_page_size, settings.max_id_chars)
    batches = earlier_batches(settings)
    previous = set(batches[-1].frame["customer_id"]) if batches else None
    return scores, data, customers, levels, query, batches, previous


def _evidence(scores: pd.DataFrame, data, playbook) -> dict | None:
    """The customers' recent warning signs that weigh the suggested actions; None without data."""
    if data is None or scores.empty:
        return None
    return data.evidence(pd.Timestamp(pd.to_datetime(scores["as_of"]).max()), playbook)


@_page
def list_page(request: Request) -> Response:
    settings = get_settings()
    base = _base(request)
    inputs = _list_inputs(request, settings)
    if inputs is None:
        return render("no_scores.html", base=base, command=SCORE_COMMAND)
    scores, data, customers, levels, query, batches, previous = inputs
    playbook = current_playbook(settings)
    view = at_risk_list(scores, customers, list(levels), query, playbook, previous,
                        _evidence(scores, data, playbook))
    try:
        contacts = latest_contacts(engine_for(settings), [r["customer_id"] for r in view.rows])
    except Exception:  # the list is still useful without the contacts column
        log.exception("the store of records is not available")
        contacts = {}
    live = live_model()
    value_name, value_def = _value_words(settings)
    return render("list.html", base=base, view=view, query=query, levels=levels, bands=BANDS,
                  sorts=SORTS, has_data=data is not None, contacts=contacts,
                  live_version=live.label if live else None, trend=_trend(scores, batches),
                  previous_as_of=day(batches[-1].as_of) if batches else None,
                  value_name=value_name, value_def=value_def, currency=settings.review_currency,
                  export_cap=settings.review_export_max_rows)


@_page
def export_csv(request: Request) -> Response:
    settings = get_settings()
    inputs = _list_inputs(request, settings)
    if inputs is None:
        raise PageError(404, "No scored batch yet", "There is no list to export.")
    scores, data, customers, levels, query, _, previous = inputs
    frame = filtered(scores, customers, list(levels), query, previous)
    cap = settings.review_export_max_rows
    as_of = pd.Timestamp(pd.to_datetime(scores["as_of"]).max())
    headers = {"Content-Disposition": f'attachment; filename="at-risk-{as_of:%Y-%m-%d}.csv"',
               "X-Rows": str(min(len(frame), cap)), "X-Rows-Matching": str(len(frame)),
               "Cache-Control": "no-store"}
    playbook = current_playbook(settings)
    return StreamingResponse(export_rows(frame, list(levels), playbook, cap,
                                         evidence=_evidence(scores, data, playbook)),
                             media_type="text/csv; charset=utf-8", headers=headers)


async def rescore_list(request: Request) -> Response:
    """Score the list again with the model the service holds, then show the list."""
    settings = get_settings()
    base = _base(request)
    try:
        scores = current_scores(settings)
        if scores is None:
            raise PageError(409, "No scored batch yet", "There is no list to re-score.")
        await run_in_threadpool(rescore, served_model(), settings, scores)
    except PageError as exc:
        return error_page(exc.status, exc.title, exc.message, base)
    except Exception:
        log.exception("re-scoring the review list failed")
        return error_page(500, "Re-scoring failed", "The list could not be re-scored. The error "
                          "is in the service log.", base)
    return RedirectResponse(f"{base}/", status_code=303)


async def record_contact(request: Request) -> Response:
    """Record that a customer was contacted, then show their page again."""
    settings = get_settings()
    base = _base(request)
    try:
        form = await request.form(max_files=0, max_fields=20)
    except Exception:
        return _bad_field(request, RecordError("body", "send the contact as a form"))
    try:
        contact = check_contact(form.get("customer_id"), form.get("owner"), form.get("note"),
                                form.get("outcome"), settings)
        data = current_data(settings)
        if data is not None and data.customer(contact.customer_id).empty:
            raise RecordError("customer_id", "there is no such customer")
        as_of_text = form.get("as_of") or ""
        if not isinstance(as_of_text, str):
            raise RecordError("as_of", "must be a date")
        try:
            as_of = _as_of(as_of_text) if as_of_text.strip() else None
        except PageError as exc:
            raise RecordError("as_of", exc.message) from None
        live = live_model()
        await run_in_threadpool(add_contact, engine_for(settings), contact,
                                live.label if live else None,
                                as_of.to_pydatetime() if as_of is not None else None)
    except RecordError as exc:
        return _bad_field(request, exc)
    except Exception:
        log.exception("recording a contact failed")
        return error_page(500, "Not recorded", "The contact could not be stored. The error is in "
                          "the service log.", base)
    return RedirectResponse(f"{base}/customer/{quote(contact.customer_id, safe='')}#contacts",
                            status_code=303)


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
                         settings.review_waterfall_steps, settings.review_crm_url,
                         earlier_batches(settings))
    value_name, value_def = _value_words(settings)
    batch_mean = float(scores["churn_probability"].mean()) if scores is not None and len(scores) else None
    return render("customer.html", base=_base(request), view=view, outcomes=OUTCOMES,
                  batch_mean=batch_mean,
                  contacts=contacts_of(engine_for(settings), customer_id),
                  campaigns=history_or_none(settings, customer_id, current_playbook(settings)),
                  value_name=value_name, value_def=value_def, currency=settings.review_currency,
                  owner_max=settings.contact_owner_max_chars,
                  note_max=settings.contact_note_max_chars)


# a file, not an inline script, so the Content-Security-Policy can forbid inline scripts
FILTERS_JS = """// filter as soon as a choice changes; the button still works without JavaScript
document.querySelectorAll("#filters select").forEach(function (s) {
  s.addEventListener("change", function () { s.form.submit(); });
});
// re-scoring takes a moment: say so, and do not send it twice
var rescore = document.getElementById("rescore");
if (rescore) {
  rescore.addEventListener("submit", function () {
    var button = rescore.querySelector("button");
    button.disabled = true;
    button.textContent = "Re-scoring with the live model…";
  });
}
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
        Route("/export.csv", export_csv, methods=["GET"], name="export"),
        Route("/rescore", rescore_list, methods=["POST"], name="rescore"),
        Route("/contacts", record_contact, methods=["POST"], name="contacts"),
        Route("/customer/{customer_id:path}", customer_page, methods=["GET"], name="customer"),
        *campaign_routes(_page, render, _base),
        *health_routes(_page, render, _base),
    ],
    exception_handlers={HTTPException: http_error},
)
