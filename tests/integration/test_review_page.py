"""The reviewer page (/review) on a real `churn serve` over loopback, and in a real browser.

The scores come from `churn score` on the trained fixture's data, with one customer whose
country is hostile markup and another whose plan is; both must come back escaped."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pandas as pd
import pytest

from tests.helpers import CHURN, Trained
from tests.integration.server import Server, free_port

AS_OF = "2026-06-15"
HOSTILE = "<script>alert(1)</script>"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LINK = re.compile(r'<a class="customer" href="([^"]*)/customer/([^"]+)">')


@dataclass
class Review:
    base: str
    scores: pd.DataFrame
    customers: pd.DataFrame
    scores_path: Path
    customers_path: Path
    events_path: Path
    hostile_country: str  # customer ids
    hostile_plan: str

    def get(self, path: str, **params: str) -> httpx.Response:
        response = httpx.get(self.base + path, params=params, timeout=120)
        assert "Traceback" not in response.text and 'File "' not in response.text
        return response


def _hostile_customers(trained: Trained, out: Path) -> tuple[pd.DataFrame, str, str]:
    """The fixture's customers with hostile markup as the country of one active customer and
    the plan of another."""
    customers = pd.read_parquet(trained.customers)
    as_of = pd.Timestamp(AS_OF)
    active = (customers["signup_at"] <= as_of) & ~(customers["churned_at"] <= as_of)
    first, second = customers.index[active][:2]
    customers.loc[first, "country"] = HOSTILE
    customers.loc[second, "plan"] = HOSTILE
    customers.to_parquet(out, index=False)
    return customers, str(customers.loc[first, "customer_id"]), str(customers.loc[second, "customer_id"])


@pytest.fixture(scope="module")
def review(trained: Trained, tmp_path_factory) -> Iterator[Review]:
    """Score the hostile data with `churn score`, then serve it with the review page."""
    folder = tmp_path_factory.mktemp("review")
    customers_path = folder / "customers.parquet"
    customers, hostile_country, hostile_plan = _hostile_customers(trained, customers_path)
    scores_path = folder / "scores.parquet"
    trained.churn("score", "--customers", str(customers_path), "--events", str(trained.events),
                  "--as-of", AS_OF, "--out", str(scores_path), "--value-column", "amount_sum_30d")
    port = free_port()
    env = {**trained.env, "CHURN_REVIEW_SCORES": str(scores_path),
           "CHURN_REVIEW_CUSTOMERS": str(customers_path), "CHURN_REVIEW_EVENTS": str(trained.events)}
    server = Server.start([CHURN, "serve", "--host", "127.0.0.1", "--port", str(port)],
                          cwd=trained.home, env=env, log=folder / "serve.log", port=port)
    try:
        server.wait_ready(180)
        scores = pd.read_parquet(scores_path).assign(
            customer_id=lambda f: f["customer_id"].astype(str))
        customers = customers.assign(customer_id=customers["customer_id"].astype(str))
        yield Review(server.url, scores, customers, scores_path, customers_path, trained.events,
                     hostile_country, hostile_plan)
    finally:
        server.stop()


def _in_process(path: str) -> httpx.Response:
    """GET from the review app in this process (no server), with the current environment."""
    from scoring.settings import get_settings
    from serving.review import review_app

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=review_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://review") as client:
            return await client.get(path)

    get_settings.cache_clear()
    try:
        return asyncio.run(get())
    finally:
        get_settings.cache_clear()


def _ids(page: str) -> list[str]:
    return [html.unescape(m.group(2)) for m in LINK.finditer(page)]


def _expected_order(scores: pd.DataFrame) -> list[str]:
    ranked = scores.sort_values(["expected_value_at_risk", "churn_probability", "customer_id"],
                                ascending=[False, False, True], kind="stable")
    return ranked["customer_id"].tolist()


def test_list_is_ranked_by_expected_value_at_risk(review: Review):
    response = review.get("/review/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    ids = _ids(response.text)
    assert len(ids) == 50
    assert ids == _expected_order(review.scores)[:50]
    assert f"Showing 50 of {len(review.scores):,} matching customers" in response.text
    assert "Ranked by expected value at risk" in response.text
    top = review.scores.set_index("customer_id").loc[ids[0]]
    assert top["reason_1_text"] in html.unescape(response.text)  # the top reason is shown


def test_bare_review_path_redirects_to_the_list(review: Review):
    response = httpx.get(review.base + "/review", timeout=60, follow_redirects=True)
    assert response.status_code == 200
    assert "At-risk customers" in response.text


def test_filters_by_band_segment_and_limit(review: Review):
    scores = review.scores.merge(review.customers[["customer_id", "plan", "country"]], on="customer_id")
    high = scores[scores["risk_band"] == "high"]
    page = review.get("/review/", band="high", limit="1000").text
    assert _ids(page) == _expected_order(high)
    assert f"of {len(high):,} matching" in page

    plan = scores["plan"].value_counts().index[0]
    chosen = scores[(scores["plan"] == plan) & (scores["risk_band"] == "medium")]
    page = review.get("/review/", band="medium", plan=plan, limit="7").text
    assert _ids(page) == _expected_order(chosen)[:7]

    assert len(_ids(review.get("/review/", limit="3").text)) == 3
    # empty values are what the filter form sends for "any"
    assert _ids(review.get("/review/", band="", plan="", limit="5").text) == \
        _expected_order(review.scores)[:5]


@pytest.mark.parametrize(("params", "named"), [
    ({"band": "purple"}, "purple"),
    ({"limit": "abc"}, "abc"),
    ({"limit": "0"}, "limit"),
    ({"limit": "-3"}, "limit"),
    ({"plan": "no-such-plan"}, "no-such-plan"),
    ({"colour": "red"}, "colour"),
])
def test_bad_filter_is_a_friendly_400(review: Review, params, named):
    response = review.get("/review/", **params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>" in response.text and named in html.unescape(response.text)
    assert "at-risk list" in response.text  # a way back


def test_unknown_customer_and_page_are_friendly_404s(review: Review):
    response = review.get("/review/customer/no-such-customer")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "no-such-customer" in response.text

    response = review.get("/review/customer/" + quote(HOSTILE, safe=""))
    assert response.status_code == 404
    assert HOSTILE not in response.text and html.escape(HOSTILE) in response.text

    assert review.get("/review/nowhere").status_code == 404
    response = review.get("/review/customer/" + review.scores["customer_id"].iloc[0], as_of="soon")
    assert response.status_code == 400


def test_customer_view_explains_with_the_served_model(review: Review, trained: Trained):
    top = _expected_order(review.scores)[0]
    response = review.get(f"/review/customer/{quote(top)}")
    assert response.status_code == 200
    page = response.text
    row = review.scores.set_index("customer_id").loc[top]
    # the served model recomputes the same probability the batch wrote
    assert f'<span class="big">{row["churn_probability"]:.1%}</span>' in page
    assert f'<span class="band {row["risk_band"]}">' in page
    assert f'id="model-version">{trained.result["model_version"]}<' in page
    assert row["reason_1_text"] in html.unescape(page)
    assert page.count("<svg") == 2  # the waterfall and the timeline
    # the waterfall, in probability terms, ends at the customer's probability
    assert f'class="value">{row["churn_probability"]:.1%}</text></g></svg>' in page
    assert "Suggested action:" in page and "Does an offer pay?" in page
    assert "calibration" in page  # says how log-odds became probabilities


def test_attributes_are_escaped(review: Review):
    escaped = html.escape(HOSTILE)
    page = review.get("/review/", country=HOSTILE, limit="1000").text
    assert _ids(page) == [review.hostile_country]
    assert HOSTILE not in page and escaped in page

    page = review.get("/review/", plan=HOSTILE, limit="1000").text
    assert _ids(page) == [review.hostile_plan]
    assert HOSTILE not in page and escaped in page

    for customer in (review.hostile_country, review.hostile_plan):
        response = review.get(f"/review/customer/{quote(customer)}")
        assert response.status_code == 200
        assert HOSTILE not in response.text and escaped in response.text


def test_without_scores_the_list_says_how_to_make_them(monkeypatch):
    monkeypatch.delenv("CHURN_REVIEW_SCORES", raising=False)
    response = _in_process("/")
    assert response.status_code == 200
    assert "No scored batch yet" in response.text and "churn score" in response.text


def test_bad_playbook_is_a_page_naming_the_key(review: Review, tmp_path: Path, monkeypatch):
    from serving.playbook import DEFAULT_PATH

    bad = tmp_path / "playbook.toml"
    bad.write_text(DEFAULT_PATH.read_text().replace("days = 120", 'days = "a lot"'))
    monkeypatch.setenv("CHURN_REVIEW_SCORES", str(review.scores_path))
    monkeypatch.setenv("CHURN_REVIEW_PLAYBOOK", str(bad))
    response = _in_process("/")
    assert response.status_code == 500
    assert "timeline.days" in response.text and "Traceback" not in response.text


def test_browser_opens_a_customer_from_the_list(review: Review, tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            # a Content-Security-Policy violation is reported as a console error
            errors: list[str] = []
            page.on("console", lambda m: errors.append(f"{m.text} {m.location.get('url', '')}")
                    if m.type == "error" and "favicon" not in m.location.get("url", "") else None)
            page.goto(review.base + "/review/")
            expect(page.locator("#at-risk")).to_be_visible()
            page.screenshot(path=str(tmp_path / "review-list.png"))
            # the filters script (a file under the CSP) submits the form on a change
            page.select_option("select[name=band]", "high")
            page.wait_for_url(re.compile(r"band=high"))
            page.go_back()
            expect(page.locator("#at-risk")).to_be_visible()
            first = page.locator("a.customer").first
            customer = first.inner_text()
            first.click()
            page.wait_for_url(re.compile(r"/review/customer/"))
            expect(page.locator("h1")).to_have_text(f"Customer {customer}")
            expect(page.locator("#reasons li").first).to_be_visible()
            expect(page.locator("#explanation svg")).to_be_visible()
            expect(page.locator("#timeline svg")).to_be_visible()
            expect(page.locator("#action")).to_contain_text("Suggested action")
            page.screenshot(path=str(tmp_path / "review-customer.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert (tmp_path / "review-customer.png").stat().st_size > 10_000
