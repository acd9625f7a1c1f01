"""The reviewer page (/review) on a real `churn serve` over loopback, and in a real browser.

The scores come from `churn score` on the trained fixture's data, with one customer whose
country is hostile markup and another whose plan is; both must come back escaped."""

from __future__ import annotations

import html
import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pandas as pd
import pytest

from benchmarks.server import Server, free_port
from tests.helpers import CHURN, Trained, review_get

AS_OF = "2026-06-15"
HOSTILE = "<script>alert(1)</script>"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LINK = re.compile(r'<a class="customer" href="([^"]*)/customer/([^"]+)">')


CRM = "https://crm.example/customers/{customer_id}"
NEW = 25  # customers left out of the earlier batch, so they are new in this one


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
    new_ids: list[str]  # not in the earlier batch

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
    new_ids = _earlier_batch(scores_path)
    port = free_port()
    env = {**trained.env, "CHURN_REVIEW_SCORES": str(scores_path),
           "CHURN_REVIEW_CUSTOMERS": str(customers_path), "CHURN_REVIEW_EVENTS": str(trained.events),
           "CHURN_REVIEW_CRM_URL": CRM, "CHURN_DATABASE_URL": f"sqlite:///{folder / 'churn.db'}"}
    server = Server.start([CHURN, "serve", "--host", "127.0.0.1", "--port", str(port)],
                          cwd=trained.home, env=env, log=folder / "serve.log", port=port)
    try:
        server.wait_ready(180)
        scores = pd.read_parquet(scores_path).assign(
            customer_id=lambda f: f["customer_id"].astype(str))
        customers = customers.assign(customer_id=customers["customer_id"].astype(str))
        yield Review(server.url, scores, customers, scores_path, customers_path, trained.events,
                     hostile_country, hostile_plan, new_ids)
    finally:
        server.stop()


def _earlier_batch(scores_path: Path) -> list[str]:
    """An earlier batch beside the scores, as the page documents it: two weeks earlier, without
    NEW customers (returned) and with everyone's risk a little lower."""
    scores = pd.read_parquet(scores_path)
    ids = scores["customer_id"].astype(str)
    new_ids = sorted(ids)[:NEW]
    earlier = scores[~ids.isin(new_ids)].assign(
        as_of=pd.Timestamp(AS_OF) - pd.Timedelta(days=14),
        churn_probability=lambda f: f["churn_probability"] * 0.9)
    folder = scores_path.with_name(scores_path.stem + ".batches")
    folder.mkdir()
    earlier.to_parquet(folder / f"{scores_path.stem}-20260601T000000000000Z.parquet", index=False)
    return new_ids


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
    assert f"Showing 1–50 of {len(review.scores):,} matching customers" in response.text
    assert "Ranked by value at risk" in response.text
    assert "yearly value = 12 × last 30 days&#39; amount" in response.text
    top = review.scores.set_index("customer_id").loc[ids[0]]
    assert top["change_1_text"] in html.unescape(response.text)  # what changed is shown
    # no file name and no feature name reaches the reader
    assert "scores.parquet" not in response.text
    features = {f for c in review.scores.columns if c.endswith("_feature")
                for f in review.scores[c].dropna()}
    text = html.unescape(response.text)
    assert features and not [f for f in features if f in text]


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
    response = review_get("/")
    assert response.status_code == 200
    assert "No scored batch yet" in response.text and "churn score" in response.text


def test_bad_playbook_is_a_page_naming_the_key(review: Review, tmp_path: Path, monkeypatch):
    from campaigns.playbook import DEFAULT_PATH

    bad = tmp_path / "playbook.toml"
    bad.write_text(DEFAULT_PATH.read_text().replace("days = 120", 'days = "a lot"'))
    monkeypatch.setenv("CHURN_REVIEW_SCORES", str(review.scores_path))
    monkeypatch.setenv("CHURN_REVIEW_PLAYBOOK", str(bad))
    response = review_get("/")
    assert response.status_code == 500
    assert "timeline.days" in response.text and "Traceback" not in response.text


def test_browser_opens_a_customer_from_the_list(review: Review, tmp_path: Path):
    """Also the docs' screenshots: REVIEW_SCREENSHOTS=docs writes them there."""
    from playwright.sync_api import expect

    shots = Path(os.environ.get("REVIEW_SCREENSHOTS") or tmp_path)
    with _browser(review.base) as page:
        page.goto(review.base + "/review/?limit=12")
        expect(page.locator("#at-risk")).to_be_visible()
        page.screenshot(path=str(shots / "review-list.png"), full_page=True)
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
        page.screenshot(path=str(shots / "review-customer.png"), full_page=True)
    assert (shots / "review-customer.png").stat().st_size > 10_000


# -- the workbench, in the browser -----------------------------------------------------------


@contextmanager
def _browser(base: str) -> Iterator:
    """A page in the suite's headless Chromium; on leaving, no console errors (a CSP violation
    is one) may have happened."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(f"{m.text} {m.location.get('url', '')}")
                    if m.type == "error" and "favicon" not in m.location.get("url", "") else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page
            assert not errors, errors
        finally:
            browser.close()


def _shown_ids(page) -> list[str]:
    return page.locator("a.customer").all_inner_texts()


def _feature_names(review: Review) -> set[str]:
    return {f for c in review.scores.columns if c.endswith("_feature")
            for f in review.scores[c].dropna()}


def test_browser_search_sort_and_page_past_a_thousand(review: Review):
    from playwright.sync_api import expect

    ranked = _expected_order(review.scores)
    assert len(ranked) > 1000, "the fixture should score more than one page of 1,000"
    with _browser(review.base) as page:
        page.goto(review.base + "/review/")
        # search by part of an id
        target = ranked[-1]
        page.fill("#search", target)
        page.press("#search", "Enter")
        page.wait_for_url(re.compile(r"q="))
        shown = _shown_ids(page)
        assert target in shown and all(target.lower() in i.lower() for i in shown)
        assert shown == [i for i in ranked if target.lower() in i.lower()][:50]

        # sort by probability, highest first, then lowest first on a second click
        page.goto(review.base + "/review/")
        page.click("a.sort[data-sort=probability]")
        page.wait_for_url(re.compile(r"sort=probability&order=desc"))
        by_p = review.scores.sort_values(["churn_probability", "customer_id"],
                                         ascending=[False, True], kind="stable")
        assert _shown_ids(page) == by_p["customer_id"].tolist()[:50]
        page.click("a.sort[data-sort=probability]")
        page.wait_for_url(re.compile(r"order=asc"))
        by_p = review.scores.sort_values(["churn_probability", "customer_id"],
                                         ascending=[True, True], kind="stable")
        assert _shown_ids(page) == by_p["customer_id"].tolist()[:50]
        page.click("a.sort[data-sort=customer]")
        page.wait_for_url(re.compile(r"sort=customer"))
        assert _shown_ids(page) == sorted(review.scores["customer_id"])[:50]

        # page past the first 1,000 rows
        page.goto(review.base + "/review/?limit=1000")
        assert _shown_ids(page) == ranked[:1000]
        page.click("#next")
        page.wait_for_url(re.compile(r"page=2"))
        assert _shown_ids(page) == ranked[1000:2000]
        expect(page.locator("#count")).to_contain_text(
            f"Showing 1,001–{min(2000, len(ranked)):,} of {len(ranked):,}")
        page.click("#prev")
        page.wait_for_url(re.compile(r"page=1|limit=1000$"))
        assert _shown_ids(page)[0] == ranked[0]


def test_browser_exports_the_filtered_list(review: Review, tmp_path: Path):
    scores = review.scores.merge(review.customers[["customer_id", "plan"]], on="customer_id")
    plan = scores["plan"].value_counts().index[0]
    chosen = _expected_order(scores[(scores["risk_band"] == "high") & (scores["plan"] == plan)])
    with _browser(review.base) as page:
        page.goto(review.base + "/review/?" + f"band=high&plan={quote(plan)}&limit=5")
        assert _shown_ids(page) == chosen[:5]
        with page.expect_download() as info:
            page.click("#export")
        path = tmp_path / "export.csv"
        info.value.save_as(path)
    exported = pd.read_csv(path, dtype={"customer_id": str})
    assert exported["customer_id"].tolist() == chosen  # every matching row, not just the page
    assert set(exported["risk_band"]) == {"high"} and set(exported["plan"]) == {plan}
    assert {"yearly_value", "what_changed", "suggested_action", "new_since_last_batch"} <= \
        set(exported.columns)
    assert not _feature_names(review) & set(exported["what_changed"].dropna())


def test_export_is_capped_as_stated(review: Review, monkeypatch):
    monkeypatch.setenv("CHURN_REVIEW_SCORES", str(review.scores_path))
    monkeypatch.setenv("CHURN_REVIEW_CUSTOMERS", str(review.customers_path))
    monkeypatch.setenv("CHURN_REVIEW_EVENTS", str(review.events_path))
    monkeypatch.setenv("CHURN_REVIEW_EXPORT_MAX_ROWS", "7")
    response = review_get("/export.csv?band=")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.text.count("\n") == 8  # the header and 7 rows
    assert response.headers["x-rows"] == "7"
    assert response.headers["x-rows-matching"] == str(len(review.scores))
    assert review_get("/export.csv?band=purple").status_code == 400


def test_new_since_the_last_batch_and_the_trend(review: Review):
    page = review.get("/review/").text
    assert f"{NEW} customers are new since the previous batch (scored on 2026-06-01)" in page
    assert page.count('class="tag new"') == len(set(_ids(page)) & set(review.new_ids))
    trend = page[page.index('id="trend"'):page.index("</table>", page.index('id="trend"'))]
    assert "2026-06-01" in trend and "2026-06-15 (this list)" in trend
    assert f"{review.scores['churn_probability'].mean():.1%}" in trend
    only_new = review.get("/review/", new="1", limit="1000").text
    assert sorted(_ids(only_new)) == review.new_ids


def test_browser_low_band_needs_no_action_and_shows_no_feature_names(review: Review):
    from playwright.sync_api import expect

    low = review.scores[review.scores["risk_band"] == "low"]
    customer = low.sort_values("churn_probability")["customer_id"].iloc[0]
    features = _feature_names(review)
    with _browser(review.base) as page:
        page.goto(review.base + f"/review/?band=low&q={quote(customer)}")
        row = page.locator("#at-risk tbody tr", has=page.locator(f"a.customer:text-is('{customer}')"))
        expect(row.locator(".tag.action")).to_have_text("No action needed")
        row.locator("a.customer").click()
        page.wait_for_url(re.compile(r"/review/customer/"))
        expect(page.locator("#action h2").first).to_have_text("No action needed")
        expect(page.locator("#action")).not_to_contain_text("Does an offer pay")
        visible = page.locator("main").inner_text()
        assert not [f for f in features if f in visible]
        for word in ("TreeSHAP", "log-odds", "sigmoid", "scores.parquet"):
            assert word not in visible
        assert " 1 days " not in visible
        expect(page.locator("#how")).not_to_have_attribute("open", "")
        page.click("#how summary")
        expect(page.locator("#how")).to_contain_text("TreeSHAP")  # the detail is one click away
        # the CRM link, with the id escaped into the configured template
        expect(page.locator("#crm")).to_have_attribute(
            "href", CRM.replace("{customer_id}", quote(customer, safe="")))


def test_browser_acts_on_a_high_risk_customer_and_records_the_outcome(review: Review):
    """From the list to a customer, the action beside its reason, the outcome recorded."""
    from playwright.sync_api import expect

    features = _feature_names(review)
    with _browser(review.base) as page:
        page.goto(review.base + "/review/?band=high")
        first = page.locator("#at-risk tbody tr").first
        changed = first.locator("td.changed").inner_text()
        action = first.locator(".tag.action").inner_text()
        customer = first.locator("a.customer").inner_text()
        first.locator("a.customer").click()
        page.wait_for_url(re.compile(r"/review/customer/"))
        expect(page.locator("#action h2").first).to_have_text(f"Suggested action: {action}")
        if changed != "—":
            expect(page.locator("#because")).to_contain_text(changed)
        assert not [f for f in features if f in page.locator("main").inner_text()]

        page.fill("#contact-form input[name=owner]", "Dana <b>Lead</b>")
        page.select_option("#contact-form select[name=outcome]", "callback")
        page.fill("#contact-form textarea[name=note]", "Asked about the price; call Friday.")
        page.click("#contact-form button")
        page.wait_for_url(re.compile(r"#contacts$"))
        rows = page.locator("#contact-list tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("Dana <b>Lead</b>")  # shown as text, not markup
        expect(rows.first).to_contain_text("Asked to be called back")

        page.goto(review.base + f"/review/?q={quote(customer)}&band=high")
        row = page.locator("#at-risk tbody tr", has=page.locator(f"a.customer:text-is('{customer}')"))
        expect(row.locator("td.contact")).to_contain_text("Asked to be called back")

    from scoring.records import contacts_of, engine_for
    from scoring.settings import Settings

    url = f"sqlite:///{review.scores_path.parent / 'churn.db'}"
    stored = contacts_of(engine_for(Settings(database_url=url)), customer)
    assert [(c.owner, c.outcome, c.as_of.date().isoformat()) for c in stored] == \
        [("Dana <b>Lead</b>", "callback", AS_OF)]
    assert stored[0].model_version is not None


@pytest.mark.parametrize(("form", "field"), [
    ({"owner": "", "outcome": "retained"}, "owner"),
    ({"owner": "x" * 101, "outcome": "retained"}, "owner"),
    ({"owner": "Ann", "outcome": "maybe"}, "outcome"),
    ({"owner": "Ann", "outcome": "retained", "note": "n" * 2001}, "note"),
    ({"owner": "Ann", "outcome": "retained", "as_of": "soon"}, "as_of"),
    ({"owner": "Ann", "outcome": "retained", "customer_id": ""}, "customer_id"),
    ({"owner": "Ann", "outcome": "retained", "customer_id": "no-such-customer"}, "customer_id"),
])
def test_a_bad_contact_is_a_400_naming_the_field(review: Review, form, field):
    data = {"customer_id": review.scores["customer_id"].iloc[0], **form}
    origin = {"Origin": review.base}
    page = httpx.post(review.base + "/review/contacts", data=data, headers=origin, timeout=60)
    assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
    assert f"{field}:" in html.unescape(page.text)
    as_json = httpx.post(review.base + "/review/contacts", data=data, timeout=60,
                         headers={**origin, "Accept": "application/json"})
    assert as_json.status_code == 400 and as_json.json()["field"] == field


def test_a_contact_from_another_site_is_refused(review: Review):
    data = {"customer_id": review.scores["customer_id"].iloc[0], "owner": "Eve",
            "outcome": "retained"}
    response = httpx.post(review.base + "/review/contacts", data=data, timeout=60,
                          headers={"Origin": "https://evil.example"})
    assert response.status_code == 403 and response.json()["field"] == "Origin"


@pytest.fixture(scope="module")
def stale(trained: Trained, review: Review, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A list scored by an older model (its version and probabilities differ from the live
    model's), served by its own `churn serve`."""
    folder = tmp_path_factory.mktemp("stale")
    path = folder / "scores.parquet"
    review.scores.assign(model_version="0",
                         churn_probability=review.scores["churn_probability"] * 0.5,
                         ).to_parquet(path, index=False)
    port = free_port()
    env = {**trained.env, "CHURN_REVIEW_SCORES": str(path),
           "CHURN_REVIEW_CUSTOMERS": str(review.customers_path),
           "CHURN_REVIEW_EVENTS": str(review.events_path),
           "CHURN_DATABASE_URL": f"sqlite:///{folder / 'churn.db'}"}
    server = Server.start([CHURN, "serve", "--host", "127.0.0.1", "--port", str(port)],
                          cwd=trained.home, env=env, log=folder / "serve.log", port=port)
    try:
        server.wait_ready(180)
        yield server.url, path
    finally:
        server.stop()


def test_browser_rescores_the_list_with_the_live_model(stale, review: Review, trained: Trained):
    from playwright.sync_api import expect

    base, path = stale
    live = str(trained.result["model_version"])
    with _browser(base) as page:
        page.goto(base + "/review/")
        expect(page.locator("#list-version")).to_have_text("0")
        expect(page.locator("#version-warning")).to_contain_text(f"version {live}")
        first = page.locator("a.customer").first.inner_text()
        page.goto(base + f"/review/customer/{quote(first)}")
        expect(page.locator("#batch-differs")).to_contain_text("scored by version 0")

        page.goto(base + "/review/")
        page.click("#rescore button")
        page.wait_for_url(re.compile(r"/review/$"), timeout=300_000)
        expect(page.locator("#list-version")).to_have_text(live)
        expect(page.locator("#version-warning")).to_have_count(0)
        expect(page.locator("#rescore")).to_have_count(0)
        expect(page.locator("#trend")).to_contain_text("0")  # the stale list is an earlier batch
        top = page.locator("a.customer").first.inner_text()
        top_p = page.locator("#at-risk tbody tr").first.locator("td.num").nth(1).inner_text()
        page.goto(base + f"/review/customer/{quote(top)}")
        expect(page.locator(".big")).to_have_text(top_p)  # list and page now agree
        expect(page.locator("#batch-differs")).to_have_count(0)

    fresh = pd.read_parquet(path)
    assert set(fresh["model_version"].astype(str)) == {live}
    np.testing.assert_allclose(
        fresh.sort_values("customer_id")["churn_probability"].to_numpy(),
        review.scores.sort_values("customer_id")["churn_probability"].to_numpy(), atol=1e-6)
    kept = list(path.with_name("scores.batches").glob("scores-*.parquet"))
    assert len(kept) == 1 and set(pd.read_parquet(kept[0])["model_version"]) == {"0"}


def test_rescoring_where_nothing_can_be_written_is_a_503_and_keeps_the_list(review: Review,
                                                                          trained: Trained,
                                                                          tmp_path):
    """The folder for earlier batches cannot be made (a file holds its name): the reviewer gets a
    503 that says so, never a 500, and the list on disk is unchanged."""
    from scoring.settings import Settings
    from scoring.store import load_model
    from serving.review.data import PageError, rescore

    path = tmp_path / "scores.parquet"
    review.scores.to_parquet(path, index=False)
    (tmp_path / "scores.batches").write_text("not a folder")
    settings = Settings(review_scores=path, review_customers=review.customers_path,
                        review_events=review.events_path)
    before = path.read_bytes()
    with pytest.raises(PageError) as info:
        rescore(load_model("models:/churn@champion"), settings, review.scores)
    assert info.value.status == 503 and "list is unchanged" in info.value.message
    assert path.read_bytes() == before


# -- issue 25, points 7 to 12: the pages say what to do, in proportion, without contradiction ----


def _recent_signs(review: Review, customer: str, patterns: tuple[str, ...], days: int = 30) -> int:
    """Events of the given warning-sign patterns in the `days` before AS_OF, counted here."""
    from fnmatch import fnmatchcase

    events = pd.read_parquet(review.events_path)
    events = events[events["customer_id"].astype(str) == customer]
    stamps = pd.to_datetime(events["timestamp"])
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    events = events.assign(timestamp=stamps)
    as_of = pd.Timestamp(AS_OF)
    recent = events[(events["timestamp"] < as_of)
                    & (events["timestamp"] >= as_of - pd.Timedelta(days=days))]
    return int(sum(any(fnmatchcase(t, p) for p in patterns) for t in recent["event_type"]))


def test_browser_list_and_export_name_the_step_to_take(review: Review, tmp_path: Path):
    """#25.7: "suggested action" is what to do ("Reach out and ask how it is going"), not the
    situation ("Contact is dropping"), in the list, the export and on the customer page."""
    from playwright.sync_api import expect

    from campaigns.playbook import NO_ACTION, load_playbook

    playbook = load_playbook()
    situations = {f.title for f in playbook.families.values()}
    steps = {f.step for f in playbook.families.values()} | {NO_ACTION.step} | {
        f.evidence.fewer.do for f in playbook.families.values() if f.evidence}
    with _browser(review.base) as page:
        page.goto(review.base + "/review/?band=high&limit=30")
        shown = page.locator("#at-risk .tag.action").all_inner_texts()
        assert shown and set(shown) <= steps and not set(shown) & situations, shown
        with page.expect_download() as info:
            page.click("#export")
        path = tmp_path / "export.csv"
        info.value.save_as(path)
        first = page.locator("#at-risk tbody tr").first
        action = first.locator(".tag.action").inner_text()
        first.locator("a.customer").click()
        page.wait_for_url(re.compile(r"/review/customer/"))
        expect(page.locator("#action h2").first).to_have_text(f"Suggested action: {action}")
        expect(page.locator("#situation")).to_be_visible()
    exported = pd.read_csv(path, dtype={"customer_id": str})
    assert exported["suggested_action"].head(30).tolist() == shown
    assert not set(exported["suggested_action"]) & situations


def test_browser_one_ticket_is_followed_up_not_escalated(review: Review):
    """#25.8: "Complaints are piling up, escalate" needs two or more complaints or tickets in
    the last 30 days; with fewer the list and the customer page say to follow up the ticket."""
    from playwright.sync_api import expect

    patterns = ("*complaint*", "*support_ticket*")
    exported = pd.read_csv(io.StringIO(review.get("/review/export.csv").text),
                           dtype={"customer_id": str})
    complaints = exported[exported["suggested_action"].isin(
        ["Escalate to your most experienced agent", "Follow up on their ticket"])]
    assert len(complaints), "the fixture should have customers whose tickets raise the risk"
    counts = {c: _recent_signs(review, c, patterns) for c in complaints["customer_id"]}
    for customer, action in zip(complaints["customer_id"], complaints["suggested_action"],
                                strict=True):
        escalate = counts[customer] >= 2
        assert (action == "Escalate to your most experienced agent") is escalate, \
            (customer, action, counts[customer])
    few = [c for c in complaints["customer_id"] if counts[c] < 2]
    assert few, "the fixture should have a customer with a single recent ticket"
    with _browser(review.base) as page:
        page.goto(review.base + f"/review/customer/{quote(few[0], safe='')}")
        expect(page.locator("#action h2").first).to_have_text(
            "Suggested action: Follow up on their ticket")
        expect(page.locator("#action")).not_to_contain_text("Escalate")
        expect(page.locator("#because")).to_contain_text("fewer than the 2")


def test_browser_a_page_never_contradicts_itself(review: Review):
    """#25.9: a low-risk customer's page lists no lifetime counts as changes and paints nothing
    red; on high-risk pages no event type is both a risk and what keeps them."""
    from playwright.sync_api import expect

    low = review.scores[review.scores["risk_band"] == "low"]
    customer = low.sort_values("churn_probability")["customer_id"].iloc[0]
    high = review.scores[review.scores["risk_band"] == "high"].sort_values(
        "churn_probability", ascending=False)["customer_id"].head(8).tolist()
    with _browser(review.base) as page:
        page.goto(review.base + f"/review/customer/{quote(customer, safe='')}")
        expect(page.locator("#changed-heading")).not_to_have_text("What changed")
        reasons = page.locator("#reasons").inner_text()  # "who they are" may hold history
        for lifetime in ("since the log began", "since the first recorded one", "overall:"):
            assert lifetime not in reasons
        expect(page.locator("#signs .warn")).to_have_count(0)
        for customer in high:
            page.goto(review.base + f"/review/customer/{quote(customer, safe='')}")
            expect(page.locator("#changed-heading")).to_have_text("What changed")
            raising = " ".join(page.locator("#reasons li").all_inner_texts()).lower()
            keeping = " ".join(page.locator("ul#lowering li").all_inner_texts()).lower()
            both = set(re.findall(r"'([^']+)'", raising)) & set(re.findall(r"'([^']+)'", keeping))
            assert not both, (customer, both)
            # thin weeks are placed against "the last 30 days" the reasons speak of
            for thin in page.locator("#thinning").all_inner_texts():
                assert re.search(r"in \d+ of \d+ weeks \((none|all|\d) of the last 4\)", thin), thin


def test_browser_the_explanation_says_where_it_starts(review: Review):
    """#25.10 and #25.12: the waterfall's first bar is the model's starting point, named as
    such beside the batch's real average; the risk is "in the next 30 days"."""
    from playwright.sync_api import expect

    customer = _expected_order(review.scores)[0]
    mean = f"{review.scores['churn_probability'].mean():.1%}"
    with _browser(review.base) as page:
        page.goto(review.base + f"/review/customer/{quote(customer, safe='')}")
        expect(page.locator("#explanation svg")).to_contain_text("Model's starting point")
        expect(page.locator("#explanation")).not_to_contain_text("Average customer")
        expect(page.locator("#batch-mean")).to_have_text(mean)
        expect(page.locator("#starting-point")).to_contain_text("not the average")
        expect(page.locator("#risk")).to_contain_text("leaves in the next 30 days")
        assert "horizon" not in page.locator("main").inner_text()
