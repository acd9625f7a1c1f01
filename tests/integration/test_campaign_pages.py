"""The /review campaign pages in the suite's headless Chromium, on a real `churn serve`.

A campaign is stored in the server's own database (the product's store, as `churn campaign
plan` and `churn campaign outcomes` would leave it) over the fixture's scored customers, with
simulated outcomes: contacting the complaints family lowers churn, the others do nothing. The
browser goes from the list's navigation to the campaign, then to a customer who said why they
were leaving, and sees the campaign in that customer's history.

`REVIEW_SCREENSHOTS=docs` writes the docs' screenshot of the campaign page there."""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import create_engine

from campaigns.playbook import load_playbook
from campaigns.store import Campaign, create_campaign, record_outcomes
from scoring.records import metadata
from tests.helpers import Trained
from tests.integration import test_review_page
from tests.integration.test_review_page import AS_OF, Review, _browser

review = test_review_page.review  # the same fixture: a scored batch on `churn serve`

SAID = "Found the same for less at a competitor; would stay for a yearly plan"
WORDS = {"price": "Too expensive for what we use", "service_quality": "Support took a week to answer",
         "no_longer_needed": "The project ended", "moved": "Our team moved to the parent company"}
SIZE = 1500
OTHER_MODELS_CAMPAIGN = "May save (the demo's)"
FACTORS = {"complaints": 0.5, "contact_drop": 0.8}  # the contact's effect on churn, by family


def _store_campaign(served: Review, model_name: str = "churn") -> tuple[str, str, str]:
    """A campaign of `model_name` over the SIZE riskiest scored customers, and a small one of
    another model (the demo's, on other data: #25.14); returns (id, name, the customer who gave
    a reason)."""
    engine = create_engine(f"sqlite:///{served.scores_path.parent / 'churn.db'}")
    metadata.create_all(engine)
    playbook = load_playbook()
    scores = served.scores.sort_values("churn_probability", ascending=False).head(SIZE)
    rng = np.random.default_rng(11)
    n = len(scores)
    arm = np.where(rng.permutation(n) < n // 5, "control", "treatment")
    family = rng.choice(["complaints", "contact_drop", "payment"], n, p=[0.4, 0.35, 0.25])
    value = scores["customer_value"].to_numpy(dtype=float)
    segment = pd.qcut(pd.Series(value).rank(method="first"), 3,
                      labels=["bottom", "middle", "top"]).astype(str).to_numpy()
    members = pd.DataFrame({
        "customer_id": scores["customer_id"].to_numpy(), "arm": arm,
        "risk_band": scores["risk_band"].to_numpy(), "value_segment": segment,
        "probability": scores["churn_probability"].to_numpy(), "customer_value": value,
        "action_family": family, "action": [playbook.families[f].title for f in family]})
    campaign = Campaign("spring-save", f"Spring save: top {n:,} by risk", "1",
                        datetime.fromisoformat(AS_OF), 30, 0.2, 11, f"the {n:,} riskiest customers",
                        params={"model_name": model_name})
    create_campaign(engine, campaign, members)
    demo = Campaign("demo-may", OTHER_MODELS_CAMPAIGN, "1", datetime.fromisoformat(AS_OF), 30,
                    0.3, 7, "a budget of 10 calls", params={"model_name": "demo-" + model_name})
    create_campaign(engine, demo, members.head(10))
    factor = np.where(arm == "treatment", pd.Series(family).map(FACTORS).fillna(1.0), 1.0)
    churn = 0.36 * factor
    left = rng.random(n) < churn
    record_outcomes(engine, campaign.campaign_id, [
        {"customer_id": c, "reached": None, "result": "left" if gone else "stayed",
         "source": "data", "recorded_at": datetime(2026, 7, 15)}
        for c, gone in zip(members["customer_id"], left, strict=True)])
    treated = members[members["arm"] == "treatment"]["customer_id"].tolist()
    reasons = ["price", "service_quality", "competitor", "no_longer_needed", "moved"]
    calls = [{"customer_id": c, "reached": i % 4 != 3,
              "result": "no_answer" if i % 4 == 3 else ("left" if i % 5 == 0 else "stayed"),
              "reason": None if i % 4 == 3 else reasons[i % len(reasons)],
              "reason_text": WORDS.get(reasons[i % len(reasons)], "") if i % 9 == 0 and i % 4 != 3 else "",
              "source": "import", "recorded_at": datetime(2026, 6, 20)}
             for i, c in enumerate(treated[:120])]
    calls[2].update(reason="competitor", reason_text=SAID, result="stayed", reached=True,
                    recorded_at=datetime(2026, 6, 22))
    record_outcomes(engine, campaign.campaign_id, calls)
    engine.dispose()
    return campaign.campaign_id, campaign.name, calls[2]["customer_id"]


def test_browser_opens_a_campaign_and_a_customer_who_said_why(review: Review, trained: Trained,
                                                              tmp_path: Path):
    from playwright.sync_api import expect

    model_name = (trained.env.get("CHURN_MODEL_NAME") or trained.result.get("model_name")
                  or "churn")
    campaign_id, name, speaker = _store_campaign(review, model_name)
    n = min(SIZE, len(review.scores))
    shots = Path(os.environ.get("REVIEW_SCREENSHOTS") or tmp_path)
    with _browser(review.base) as page:
        page.goto(review.base + "/review/?limit=5")
        page.locator("#nav-campaigns").click()
        page.wait_for_url(re.compile(r"/review/campaigns$"))
        row = page.locator("#campaigns tbody tr", has_text=name)
        expect(row).to_contain_text(f"{n - n // 5:,}")  # contacted
        expect(row).to_contain_text(f"{n // 5:,}")  # control
        # another model's campaign is listed apart, never among this model's (#25.14)
        expect(page.locator("#campaigns")).not_to_contain_text(OTHER_MODELS_CAMPAIGN)
        expect(page.locator("#other-campaigns")).to_contain_text(OTHER_MODELS_CAMPAIGN)
        expect(page.locator("#other-campaigns")).not_to_contain_text(name)
        row.locator("a.campaign").click()
        page.wait_for_url(re.compile(rf"/review/campaigns/{campaign_id}$"))
        # a save rate is never a negative percentage (#25.12)
        assert not re.search(r"-\d+(\.\d+)?%", page.locator("main").inner_text())
        expect(page.locator("h1")).to_have_text(name)
        verdict = page.locator("#verdict-text")
        expect(verdict).to_contain_text(re.compile(r"lowered churn|No effect shown"))
        expect(page.locator("#uplift")).to_contain_text(re.compile(r"[+-]\d+\.\d pp"))
        expect(page.locator("#chart svg circle.dot")).to_have_count(2 * (1 + 3 + 3))
        expect(page.locator("#by-family")).to_contain_text("complaints")
        expect(page.locator("#imported")).to_have_text("120")
        expect(page.locator("#reason-counts")).to_contain_text("Went to a competitor")
        page.screenshot(path=str(shots / "review-campaign.png"), full_page=True)

        said = page.locator("#said tr", has_text=SAID)
        expect(said).to_have_count(1)
        said.locator("a.customer").click()
        page.wait_for_url(re.compile(r"/review/customer/"))
        expect(page.locator("h1")).to_have_text(f"Customer {speaker}")
        history = page.locator("#campaign-history")
        expect(history).to_contain_text(name)
        expect(history).to_contain_text("contacted")
        expect(history).to_contain_text("Went to a competitor")
        expect(history).to_contain_text(SAID)
        expect(history).to_contain_text("call centre")
        expect(history).not_to_contain_text(OTHER_MODELS_CAMPAIGN)
    assert (shots / "review-campaign.png").stat().st_size > 10_000
