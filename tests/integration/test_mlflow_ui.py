"""`churn ui` on the trained store, looked at in a real browser: the MLflow UI of the locked
version (3.17) lands on the classic runs view, not the GenAI one, and the parent run a user
opens first names the registered model."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.server import free_port
from tests.helpers import CHURN, Trained

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# what only MLflow's GenAI view shows
GENAI = ("Detect Issues", "Observability", "Evaluation runs", "Judges")


@pytest.fixture(scope="module")
def ui(trained: Trained, tmp_path_factory) -> Iterator[dict[str, str]]:
    """`churn ui` on a free port: the links it printed, once its server answers."""
    folder = tmp_path_factory.mktemp("ui")
    port = free_port()
    stdout, stderr = folder / "ui.out", folder / "ui.err"
    with stdout.open("w") as o, stderr.open("w") as e:
        proc = subprocess.Popen([CHURN, "ui", "--port", str(port)], cwd=trained.home,
                                env=trained.env, stdout=o, stderr=e, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, stderr.read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, stderr.read_text()[-3000:]
            time.sleep(1)
        links = dict(line.split(": ", 1) for line in stdout.read_text().splitlines() if ": " in line)
        yield links
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 900})
        finally:
            browser.close()


def _parent_name(trained: Trained) -> str:
    import mlflow

    return mlflow.get_run(trained.result["run_id"]).info.run_name


def _names_registered_model(page, version: str) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_text("About this run")).to_be_visible(timeout=90_000)
    # "Registered models" in the run's details, and again in its logged models' table
    links = page.locator(f"a[href*='models/churn/versions/{version}']")
    expect(links.first).to_be_visible(timeout=30_000)
    assert all(t.split() == ["churn", f"v{version}"] for t in links.all_inner_texts())


def test_ui_lands_on_the_training_runs(ui: dict[str, str], trained: Trained, page):
    from playwright.sync_api import expect

    page.goto(ui["training runs"])
    parent = page.get_by_role("link", name=_parent_name(trained))
    expect(parent).to_be_visible(timeout=90_000)  # the SPA rendered the runs table
    assert "/runs" in page.url and "workflowType=machine_learning" in page.url
    body = page.inner_text("body")
    assert not [s for s in GENAI if s in body], body[:2000]
    # the run a user opens first, from the table: the parent run, naming the registered model
    parent.click()
    expect(page).to_have_url(re.compile(trained.result["run_id"]), timeout=30_000)
    _names_registered_model(page, str(trained.result["model_version"]))


def _latest_training_run(trained: Trained) -> tuple[str, str]:
    """(run id, registered version) of the newest training run in the store: other tests in
    this process may have trained into it after `trained` did."""
    import mlflow

    client = mlflow.MlflowClient()
    runs = client.search_runs([mlflow.get_run(trained.result["run_id"]).info.experiment_id],
                              filter_string="tags.`churn.kind` = 'train'", max_results=1000)
    newest = max(runs, key=lambda r: r.info.start_time)
    [version] = client.search_model_versions(f"run_id = '{newest.info.run_id}'")
    return newest.info.run_id, str(version.version)


def test_ui_prints_the_latest_training_run(ui: dict[str, str], trained: Trained, page):
    run_id, version = _latest_training_run(trained)
    assert run_id in ui["latest training run"]
    page.goto(ui["latest training run"])
    _names_registered_model(page, version)
    body = page.inner_text("body")
    assert not [s for s in GENAI if s in body], body[:2000]
