"""The HTTP service over real HTTP: `churn serve` runs as a subprocess against the trained store.

Every test talks to the server exactly as a client would. Tests that need the champion read it
at their start, and the one test that moves the alias puts it back, so the order of tests (here
and in test_training.py) does not matter."""

from __future__ import annotations

import copy
import io
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest
from mlflow import MlflowClient

from benchmarks.server import Server, free_port

CHURN = str(Path(sys.executable).with_name("churn"))
AS_OF = pd.Timestamp("2026-06-15")
AS_OF_TEXT = "2026-06-15T00:00:00"
TOL = 1e-9
BANDS = {"low", "medium", "high"}
MAX_CUSTOMERS, MAX_EVENTS = 50, 5000
SERVER_ENV = {"CHURN_RELOAD_INTERVAL_S": "1", "CHURN_MAX_CUSTOMERS_PER_REQUEST": str(MAX_CUSTOMERS),
              "CHURN_MAX_EVENTS_PER_REQUEST": str(MAX_EVENTS)}


def champion() -> str:
    return str(MlflowClient().get_model_version_by_alias("churn", "champion").version)


# --------------------------------------------------------------------------------------------
# Fixtures: one server for the module, real customers from the generated data
# --------------------------------------------------------------------------------------------


def _serve(trained, tmp_path_factory, **env):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    srv = Server.start([CHURN, "serve", "--host", "127.0.0.1", "--port", str(port)],
                       cwd=trained.home, env={**trained.env, **SERVER_ENV, **env}, log=log,
                       port=port)
    try:
        srv.wait_ready(120)
        yield srv
    finally:
        survived_term, left = srv.stop(20)
        assert not left, f"processes left after SIGTERM and SIGKILL: {left}"
        assert srv.proc.returncode is not None


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    """The default server: a lone request is scored in the public process."""
    yield from _serve(trained, tmp_path_factory)


@pytest.fixture(scope="module")
def scorer_server(trained, tmp_path_factory):
    """Every request handed to the batching Scorer process (CHURN_LOCAL_MAX_INFLIGHT=0)."""
    yield from _serve(trained, tmp_path_factory, CHURN_LOCAL_MAX_INFLIGHT="0")


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def scorer_http(scorer_server):
    with httpx.Client(base_url=scorer_server.url, timeout=120) as client:
        yield client


@pytest.fixture(params=["in-process", "scorer"])
def path(request) -> tuple[Server, httpx.Client]:
    """Both ways a request can be scored: (server, client)."""
    if request.param == "in-process":
        return request.getfixturevalue("server"), request.getfixturevalue("http")
    return request.getfixturevalue("scorer_server"), request.getfixturevalue("scorer_http")


def customer_body(row, events: pd.DataFrame) -> dict:
    """One customer of /predict, as a CRM would send it: attributes and history before as_of."""
    dob = row.date_of_birth
    return {
        "customer_id": int(row.customer_id),
        "signup_at": row.signup_at.isoformat(),
        "attributes": {
            "plan": row.plan, "contract": row.contract, "seats": int(row.seats),
            "country": row.country, "date_of_birth": None if pd.isna(dob) else str(dob),
        },
        "events": [
            {"timestamp": ts.isoformat(), "event_type": etype,
             **({} if pd.isna(amount) else {"amount": float(amount)})}
            for ts, etype, amount in zip(events["timestamp"], events["event_type"],
                                         events["amount"], strict=True)
        ],
    }


@pytest.fixture(scope="module")
def samples(trained) -> list[dict]:
    """Five customers active at AS_OF, including one without a date of birth and one with a
    blank country, each with its events strictly before AS_OF."""
    table = pd.read_parquet(trained.customers)
    events = pd.read_parquet(trained.events)
    events = events[events["timestamp"] < AS_OF]
    counts = events.groupby("customer_id").size()
    active = table[(table["signup_at"] <= AS_OF) & ~(table["churned_at"] <= AS_OF)]
    active = active[active["customer_id"].map(counts).fillna(0).between(1, 600)]
    active = active.sort_values("customer_id")
    picks = list(active["customer_id"].head(3))
    for mask in (active["date_of_birth"].isna(), active["country"] == ""):
        picks.append(next(c for c in active.loc[mask, "customer_id"] if c not in picks))
    picks.append(next(c for c in active["customer_id"].iloc[::-1] if c not in picks))
    by_id = events.groupby("customer_id")
    bodies = [customer_body(table.set_index("customer_id").loc[[c]].reset_index().iloc[0],
                            by_id.get_group(c)) for c in picks]
    assert sum(len(b["events"]) for b in bodies) <= MAX_EVENTS
    return bodies


def predict(http: httpx.Client, customers: list[dict]) -> dict:
    resp = http.post("/predict", json={"customers": customers, "as_of": AS_OF_TEXT})
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_for_version(http: httpx.Client, version: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    info = {}
    while time.monotonic() < deadline:
        resp = http.get("/model")
        assert resp.status_code == 200, resp.text
        info = resp.json()
        if info["version"] == version:
            return info
        time.sleep(0.25)
    raise AssertionError(f"GET /model still shows version {info.get('version')} after "
                         f"{timeout:.0f} s, expected {version}")


@pytest.fixture(scope="module")
def reference(http, samples) -> dict:
    """/predict for the samples with the champion the module started with."""
    wait_for_version(http, champion())
    return predict(http, samples)


@pytest.fixture(scope="module")
def scores(trained, reference, tmp_path_factory) -> pd.DataFrame:
    """`churn score` with the very model version that answered `reference`."""
    out = tmp_path_factory.mktemp("score") / "scores.parquet"
    trained.churn("score", "--customers", str(trained.customers), "--events",
                  str(trained.events), "--as-of", "2026-06-15", "--out", str(out),
                  "--model", f"models:/churn/{reference['model_version']}")
    return pd.read_parquet(out)


def explain(http: httpx.Client, customer: dict) -> dict:
    resp = http.post("/explain", json={**customer, "as_of": AS_OF_TEXT})
    assert resp.status_code == 200, resp.text
    return resp.json()


# --------------------------------------------------------------------------------------------
# /predict, /predict_features, /explain, /model
# --------------------------------------------------------------------------------------------


def test_predict_returns_probabilities_bands_and_reasons(path, samples, reference):
    body = predict(path[1], samples)
    for got, want in zip(body["predictions"], reference["predictions"], strict=True):
        # both ways score alike
        assert abs(got["churn_probability"] - want["churn_probability"]) <= TOL
        assert got["risk_band"] == want["risk_band"]
        assert [r["feature"] for r in got["reasons"]] == [r["feature"] for r in want["reasons"]]
    assert pd.Timestamp(body["as_of"]) == AS_OF.tz_localize("UTC")  # with its offset
    assert body["model_version"] == champion()
    preds = body["predictions"]
    assert len(preds) == len(samples)
    for sent, pred in zip(samples, preds, strict=True):
        assert set(pred) == {"customer_id", "churn_probability", "risk_band", "reasons",
                             "lowering_reasons", "model_version", "warnings"}
        assert pred["warnings"] == []  # the model knows every part of these customers
        assert pred["customer_id"] == str(sent["customer_id"])
        assert 0 < pred["churn_probability"] < 1
        assert pred["risk_band"] in BANDS
        assert pred["model_version"] == body["model_version"]
        assert 1 <= len(pred["reasons"]) <= 3 and 1 <= len(pred["lowering_reasons"]) <= 3
        for reason in pred["reasons"] + pred["lowering_reasons"]:
            assert set(reason) == {"feature", "value", "contribution", "effect", "text"}
            assert reason["feature"] and reason["text"]
            assert math.isfinite(reason["contribution"]) and math.isfinite(reason["effect"])
        # reasons raise the risk, largest first; the lowering ones lower it, largest first
        contributions = [r["contribution"] for r in pred["reasons"]]
        assert contributions == sorted(contributions, reverse=True) and min(contributions) > 0
        lowering = [r["contribution"] for r in pred["lowering_reasons"]]
        assert lowering == sorted(lowering) and max(lowering) < 0
        assert all(r["effect"] > 0 for r in pred["reasons"])
        assert all(r["effect"] < 0 for r in pred["lowering_reasons"])


def test_predict_equals_churn_score(reference, samples, scores):
    """The issue's parity requirement: the same probability over HTTP as from the CLI."""
    by_id = scores.set_index("customer_id")
    for sent, pred in zip(samples, reference["predictions"], strict=True):
        # integer ids from the generator come back as their digits, the text churn score writes
        assert pred["customer_id"] == str(sent["customer_id"])
        row = by_id.loc[str(sent["customer_id"])]
        assert abs(pred["churn_probability"] - row["churn_probability"]) <= TOL, sent["customer_id"]
        assert pred["risk_band"] == row["risk_band"]
        assert pred["model_version"] == row["model_version"]
        assert [r["feature"] for r in pred["reasons"]] == [
            row[f"reason_{i}_feature"] for i in (1, 2, 3) if row[f"reason_{i}_feature"]]


def test_predict_features_equals_predict(path, samples, reference):
    http = path[1]
    features = http.get("/model").json()["features"]
    rows = []
    for customer in samples:
        values = {f["feature"]: f["value"] for f in explain(http, customer)["features"]}
        assert sorted(values) == sorted(features)
        rows.append({"customer_id": customer["customer_id"], "as_of": AS_OF_TEXT, **values})
    resp = http.post("/predict_features", json={"rows": rows})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_version"] == reference["model_version"]
    for got, want in zip(body["predictions"], reference["predictions"], strict=True):
        assert got["customer_id"] == str(want["customer_id"])
        assert abs(got["churn_probability"] - want["churn_probability"]) <= TOL
        assert got["risk_band"] == want["risk_band"]
        assert [r["feature"] for r in got["reasons"]] == [r["feature"] for r in want["reasons"]]


def test_explain_lists_every_feature_and_adds_up(path, samples, reference):
    http = path[1]
    customer, want = samples[0], reference["predictions"][0]
    body = explain(http, customer)
    assert body["customer_id"] == str(customer["customer_id"])
    assert pd.Timestamp(body["as_of"]) == AS_OF.tz_localize("UTC")  # with its offset
    assert body["model_version"] == reference["model_version"]
    features = http.get("/model").json()["features"]
    assert sorted(f["feature"] for f in body["features"]) == sorted(features)
    # largest absolute contribution first, and not merely in the model's order
    sizes = [abs(f["contribution"]) for f in body["features"]]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] > 0 and [f["feature"] for f in body["features"]] != features
    for f in body["features"]:
        assert set(f) == {"feature", "value", "contribution"}
        assert math.isfinite(f["contribution"])
    total = body["base_value"] + sum(f["contribution"] for f in body["features"])
    assert abs(total - body["raw_score"]) <= TOL
    # the calibrated probability is the one /predict gives, not a plain sigmoid of raw_score
    assert abs(body["churn_probability"] - want["churn_probability"]) <= TOL
    assert body["risk_band"] == want["risk_band"]
    assert [r["feature"] for r in body["reasons"]] == [r["feature"] for r in want["reasons"]]
    top = sorted(body["features"], key=lambda f: -f["contribution"])[:3]
    top = [f for f in top if f["contribution"] > 0]
    assert [r["contribution"] for r in body["reasons"]] == pytest.approx(
        [f["contribution"] for f in top], abs=TOL)
    bottom = [f for f in sorted(body["features"], key=lambda f: f["contribution"])[:3]
              if f["contribution"] < 0]
    assert [r["feature"] for r in body["lowering_reasons"]] == [f["feature"] for f in bottom]


def test_model_describes_the_champion(http):
    version = champion()
    info = wait_for_version(http, version, 10)
    mv = MlflowClient().get_model_version("churn", version)
    assert info["name"] == "churn"
    assert "champion" in info["aliases"]
    assert info["run_id"] == mv.run_id
    assert 0.5 < info["metrics"]["test_roc_auc"] <= 1
    assert info["features"] and len(set(info["features"])) == len(info["features"])


def test_health_readiness_and_metrics(http):
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200
    metrics = http.get("/metrics")
    assert metrics.status_code == 200
    assert "bentoml" in metrics.text


# --------------------------------------------------------------------------------------------
# Bad input: a 4xx naming the field, and the server keeps answering correctly
# --------------------------------------------------------------------------------------------

GOOD = {
    "customer_id": 7, "signup_at": "2025-01-01T00:00:00",
    "attributes": {"plan": "pro", "contract": "monthly", "seats": 2, "country": "DE",
                   "date_of_birth": "1980-01-01"},
    "events": [{"timestamp": "2026-06-01T00:00:00", "event_type": "login"},
               {"timestamp": "2026-06-02T08:00:00", "event_type": "payment", "amount": 49.0}],
}


def cust(**changes) -> dict:
    out = copy.deepcopy(GOOD)
    out.update(changes)
    return out


def attrs(**changes) -> dict:
    return cust(attributes={**GOOD["attributes"], **changes})


def req(*customers: dict, **extra) -> dict:
    return {"customers": list(customers), "as_of": AS_OF_TEXT, **extra}


RAW_AMOUNT = ('{"customers": [{"customer_id": 7, "signup_at": "2025-01-01T00:00:00", "events": '
              '[{"timestamp": "2026-06-01T00:00:00", "event_type": "payment", "amount": %s}]}], '
              '"as_of": "' + AS_OF_TEXT + '"}')

# name -> (path, JSON body or raw text, expected statuses, what the named field must contain)
BAD = {
    "malformed json": ("/predict", '{"customers": [', {400, 422}, None),
    "missing customers": ("/predict", {"as_of": AS_OF_TEXT}, {400, 422}, "customers"),
    "extra top-level field": ("/predict", req(GOOD, debug=True), {400, 422}, "debug"),
    "extra customer field": ("/predict", req(cust(vip=True)), {400, 422}, "customers.0.vip"),
    "events is a string": ("/predict", req(cust(events="login")), {400, 422},
                           "customers.0.events"),
    "customer_id is a list": ("/predict", req(cust(customer_id=[7])), {400, 422},
                              "customers.0.customer_id"),
    "unparseable timestamp": ("/predict", req(cust(events=[
        {"timestamp": "last tuesday", "event_type": "login"}])), {400, 422},
        "customers.0.events.0.timestamp"),
    "event at as_of": ("/predict", req(cust(events=[
        {"timestamp": "2026-06-01T00:00:00", "event_type": "login"},
        {"timestamp": AS_OF_TEXT, "event_type": "login"}])), {400},
        "customers.0.events.1.timestamp"),
    "event after as_of": ("/predict", req(cust(events=[
        {"timestamp": "2026-06-20T00:00:00", "event_type": "login"}])), {400},
        "events.0.timestamp"),
    "explain event after as_of": ("/explain", {**cust(events=[
        {"timestamp": "2026-07-01T00:00:00", "event_type": "login"}]), "as_of": AS_OF_TEXT},
        {400}, "events.0.timestamp"),
    "NaN amount": ("/predict", RAW_AMOUNT % "NaN", {400, 422}, "customers.0.events.0.amount"),
    "infinite amount": ("/predict", RAW_AMOUNT % "1e999", {400, 422},
                        "customers.0.events.0.amount"),
    "empty customers": ("/predict", req(), {400, 422}, "customers"),
    "non-numeric seats": ("/predict", req(attrs(seats="x")), {400, 422},
                          "customers.0.attributes.seats"),
    "too many customers": ("/predict", req(*[cust(customer_id=i) for i in range(51)]), {413},
                           "customers"),
    "too many events": ("/predict", req(cust(events=[
        {"timestamp": "2026-06-01T00:00:00", "event_type": "login"}] * (MAX_EVENTS + 1))),
        {413}, "events"),
    "explain too many events": ("/explain", {**cust(events=[
        {"timestamp": "2026-06-01T00:00:00", "event_type": "login"}] * (MAX_EVENTS + 1)),
        "as_of": AS_OF_TEXT}, {413}, "events"),
    "predict_features empty rows": ("/predict_features", {"rows": []}, {400, 422}, "rows"),
    "predict_features missing feature": ("/predict_features", "missing", {400, 422}, "rows.0."),
    "predict_features unknown feature": ("/predict_features", "unknown", {400, 422},
                                         "rows.0.no_such_feature"),
}


def named_fields(body: dict) -> list[str]:
    """The fields a 4xx body names, dotted: customers[0].events[1] -> customers.0.events.1."""
    if "field" in body:
        return [str(body["field"]).replace("[", ".").replace("]", "")]
    return [".".join(map(str, d.get("loc", []))) for d in body.get("detail", [])]


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_names_the_field_and_the_server_keeps_serving(name, path, samples, reference):
    server, http = path
    path, payload, statuses, field = BAD[name]
    if payload in ("missing", "unknown"):
        features = http.get("/model").json()["features"]
        row = {"customer_id": 7, **dict.fromkeys(features, 0.0)}
        if payload == "missing":
            row.pop(features[-1])
            field += features[-1]
        else:
            row["no_such_feature"] = 1.0
        payload = {"rows": [row]}
    if isinstance(payload, str):
        resp = http.post(path, content=payload, headers={"content-type": "application/json"})
    else:
        resp = http.post(path, json=payload)
    assert resp.status_code in statuses, resp.text
    body = resp.json()
    assert isinstance(body, dict) and body.get("error"), resp.text
    if field is None:
        assert "json" in resp.text.lower()
    else:
        assert any(field in f for f in named_fields(body)), (field, body)

    assert server.running()
    again = predict(http, samples[:1])["predictions"][0]
    want = reference["predictions"][0]
    assert again["customer_id"] == str(want["customer_id"])
    assert abs(again["churn_probability"] - want["churn_probability"]) <= TOL


def assert_error_shape(resp: httpx.Response, status: int, field: str | None = None) -> dict:
    """The one error shape: JSON {"error", "field", "detail"}, text without internal names."""
    assert resp.status_code == status, resp.text[:500]
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert {"error", "field", "detail"} <= set(body), body
    assert all(isinstance(body[k], str) for k in ("error", "field", "detail"))
    assert body["error"] and body["detail"]
    assert set(body) <= {"error", "field", "detail", "index", "task_id"}, body
    assert "IODescriptor" not in resp.text and "validation error for" not in resp.text
    if field is not None:
        assert body["field"] == field, body
    return body


# (method, path, kwargs of httpx, status, field): one of each way a request goes wrong, on
# every endpoint: BentoML's validation, our own checks, the guard, Starlette's 404 and 405
SHAPES = {
    "malformed json": ("POST", "/predict", {"content": b'{"customers": [', "headers": {
        "content-type": "application/json"}}, 400, "body"),
    "json array": ("POST", "/explain", {"json": []}, 400, "body"),
    "missing field": ("POST", "/explain", {"json": {"customer_id": 1}}, 400, "signup_at"),
    "extra field": ("POST", "/predict", {"json": req(GOOD, debug=True)}, 400, "debug"),
    "event after as_of": ("POST", "/predict", {"json": req(cust(events=[
        {"timestamp": "2026-06-20T00:00:00", "event_type": "login"}]))}, 400,
        "customers[0].events[0].timestamp"),
    "empty rows": ("POST", "/predict_features", {"json": {"rows": []}}, 400, "rows"),
    "too many customers": ("POST", "/predict", {"json": req(*[cust(customer_id=i)
                                                              for i in range(51)])}, 413,
                           "customers"),
    "text/plain": ("POST", "/predict", {"content": b"{}", "headers": {
        "content-type": "text/plain"}}, 415, "Content-Type"),
    "form to predict_features": ("POST", "/predict_features", {"data": {"rows": "x"}}, 415,
                                 "Content-Type"),
    "json to batch": ("POST", "/batch/submit", {"json": {"customers": "x"}}, 415,
                      "Content-Type"),
    "batch without files": ("POST", "/batch/submit", {"files": {"as_of": (None, "2026-06-15")}},
                            400, "customers"),
    "batch status without id": ("GET", "/batch/status", {}, 400, "task_id"),
    "batch get unknown": ("GET", "/batch/get", {"params": {"task_id": "0" * 32}}, 404,
                          "task_id"),
    "unknown path": ("GET", "/no/such/endpoint", {}, 404, "path"),
    "GET a POST endpoint": ("GET", "/predict", {}, 405, "method"),
    "POST to /model": ("POST", "/model", {"json": {}}, 405, "method"),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_every_error_has_one_shape(http, name):
    method, path, kwargs, status, field = SHAPES[name]
    resp = http.request(method, path, **kwargs)
    body = assert_error_shape(resp, status, field)
    if status == 405:
        assert resp.headers["allow"] and resp.headers["allow"] in body["error"]


@pytest.mark.parametrize("where,body,field", [
    ("signup_at", req(cust(signup_at="03/10/2025")), "customers[0].signup_at"),
    ("as_of", {**req(GOOD), "as_of": "06/15/2026"}, "as_of"),
    ("event time", req(cust(events=[{"timestamp": "6/1/2026 10:00", "event_type": "login"}])),
     "customers[0].events[0].timestamp"),
    ("explain as_of", {**GOOD, "as_of": "15.06.2026"}, "as_of"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_us_style_date_gets_the_iso_8601_hint(http, where, body, field):
    path = "/explain" if where.startswith("explain") else "/predict"
    got = assert_error_shape(http.post(path, json=body), 400, field)
    assert "use ISO 8601, e.g. 2026-06-30 or 2026-06-30T09:00:00Z" in got["error"]


def test_predict_features_names_every_missing_feature_at_once(http):
    features = http.get("/model").json()["features"]
    gone = [features[0], features[len(features) // 2], features[-1]]
    row = {"customer_id": 7, **{f: 0.0 for f in features if f not in gone}, "no_such": 1.0}
    body = assert_error_shape(http.post("/predict_features", json={"rows": [row]}), 400,
                              "rows[0]")
    assert body["index"] == 0
    for name in gone:
        assert name in body["error"] and f"rows[0].{name}: missing feature" in body["detail"]
    assert "3 missing features" in body["error"] and "no_such" in body["error"]
    # a second bad row is reported in the same answer
    good = {"customer_id": 8, **dict.fromkeys(features, 0.0)}
    other = {"customer_id": 9, **{f: 0.0 for f in features[1:]}}
    body = assert_error_shape(http.post("/predict_features", json={"rows": [
        good, row, other]}), 400, "rows[1]")
    assert body["index"] == 1 and f"rows[2].{features[0]}: missing feature" in body["detail"]


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "predict.json"
SERVE_DOCS = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def test_openapi_document_has_examples_and_the_real_error_shapes(http):
    from importlib.metadata import version

    resp = http.get("/docs.json")
    assert resp.status_code == 200
    spec, text = resp.json(), resp.text
    assert spec["info"]["title"] == "churn-service API"
    assert spec["info"]["version"] == version("churn-service")
    # nothing internal, nothing of another site
    assert "IODescriptor" not in text and "http://" not in text and "https://" not in text
    assert "TaskStatusResponse" not in text and "BentoML" not in text

    ops = {(path, method): op for path, item in spec["paths"].items()
           for method, op in item.items()}
    assert {("/model", "get"), ("/batch/submit", "post"), ("/batch/status", "get"),
            ("/batch/get", "get")} <= set(ops)
    assert not any("retry" in p or "cancel" in p for p, _ in ops)  # none exist

    # the examples are the file's, and the server accepts each of them as it stands
    examples = {path: ops[(path, "post")]["requestBody"]["content"]["application/json"][
        "example"] for path in ("/predict", "/explain", "/predict_features")}
    sample = json.loads(EXAMPLE.read_text())
    assert examples["/predict"] == sample
    assert examples["/explain"] == {**sample["customers"][0], "as_of": sample["as_of"]}
    row = examples["/predict_features"]["rows"][0]
    assert set(http.get("/model").json()["features"]) <= set(row)
    answers = {path: http.post(path, json=body) for path, body in examples.items()}
    for path, answer in answers.items():
        assert answer.status_code == 200, (path, answer.text[:300])
    assert answers["/predict_features"].json()["predictions"][0]["churn_probability"] == \
        pytest.approx(answers["/predict"].json()["predictions"][0]["churn_probability"], abs=TOL)

    # every error answer documented as the Error schema, whose fields the server really sends
    error = spec["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "field", "detail"}
    for (path, _method), op in ops.items():
        for status, response in op["responses"].items():
            if int(status) < 400:
                continue
            media = response["content"]["application/json"]
            assert media["schema"] == {"$ref": "#/components/schemas/Error"}, (path, status)
            assert set(error["required"]) <= set(media["example"]) <= set(error["properties"])
    # every answer's warnings are documented (additive: the other fields are unchanged)
    schemas = spec["components"]["schemas"]
    for name in ("Prediction", "ExplainResponse"):
        warnings = schemas[name]["properties"]["warnings"]
        assert warnings["type"] == "array" and "never seen" in warnings["description"], name
    bad = http.post("/predict", json={"customers": [{"customer_id": 1, "signup_at": "x"}]})
    assert set(assert_error_shape(bad, 400)) <= set(error["properties"])
    assert "400" in ops[("/predict", "post")]["responses"]

    # the manual's Serve page lists every endpoint the page shows
    serve = SERVE_DOCS.read_text()
    for path in spec["paths"]:
        assert f"`{path}" in serve or f"{path}`" in serve or f", `{path}" in serve, path


def test_docs_page_works_offline_and_asks_no_other_site(server, http):
    """The page and everything it loads come from the service itself: no CDN, no tag manager,
    no validator badge, no script inline (the CSP would block it)."""
    from playwright.sync_api import expect, sync_playwright

    from tests.integration.test_review_page import CHROMIUM, CHROMIUM_ARGS

    for path in ("/", "/docs"):
        page = http.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "http://" not in page.text and "https://" not in page.text
        assert "<script>" not in page.text and "iframe" not in page.text
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            asked: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: asked.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(server.url + "/docs")
            expect(page.locator(".info .title")).to_contain_text("churn-service API")
            paths = page.locator(".opblock-summary-path")
            expect(paths.first).to_be_visible()
            shown = set(paths.all_inner_texts())
            assert {"/predict", "/explain", "/predict_features", "/model", "/batch/submit",
                    "/batch/status", "/batch/get"} <= shown
            page.locator("#operations-Scoring-churn__predict .opblock-summary").click()
            expect(page.locator("#operations-Scoring-churn__predict")).to_contain_text("acme-42")
        finally:
            browser.close()
    assert asked and all(url.startswith(server.url + "/") for url in asked), asked
    assert not errors, errors


@pytest.mark.parametrize("customer", [
    cust(events=[*GOOD["events"], {"timestamp": "2026-06-03T00:00:00", "event_type": "teleport"}]),
    attrs(plan="platinum"),
], ids=["unknown event type", "unknown plan"])
def test_unknown_categories_are_accepted(http, customer):
    body = predict(http, [customer])
    (pred,) = body["predictions"]
    assert pred["customer_id"] == str(customer["customer_id"])
    assert 0 < pred["churn_probability"] < 1 and pred["risk_band"] in BANDS


def test_a_response_warns_about_what_the_model_has_never_seen(path, samples, reference):
    """A typo (`Plan`, `Login`) is accepted and scored as unseen, and named in that customer's
    `warnings`; the other customers' answers are unchanged and warn about nothing."""
    _, http = path
    typo = copy.deepcopy(samples[0])
    typo["attributes"]["Plan"] = typo["attributes"].pop("plan")
    typo["events"].append({"timestamp": "2026-06-14T00:00:00Z", "event_type": "Login",
                           "contacts": {"store": "Munich"}})
    body = predict(http, [samples[1], typo])
    clean, warned = body["predictions"]
    assert clean["warnings"] == []
    assert abs(clean["churn_probability"]
               - reference["predictions"][1]["churn_probability"]) <= TOL
    n = len(typo["events"]) - 1
    assert warned["warnings"] == [
        "customers[1].attributes.Plan: is not an attribute of the model and is ignored "
        "(did you mean 'plan'?)",
        f"customers[1].events[{n}].event_type: 'Login' is not an event type the model has "
        "features for: it counts only in the totals (did you mean 'login'?)",
        f"customers[1].events[{n}].contacts.store: is not a contact column of the model and is "
        "ignored"]
    explained = http.post("/explain", json={**typo, "as_of": AS_OF_TEXT})
    assert explained.status_code == 200, explained.text
    assert [w.replace("customers[1].", "") for w in warned["warnings"]] == \
        explained.json()["warnings"]


def test_an_event_column_sent_as_a_field_is_told_where_it_goes(http):
    """`churn score` reads extra event columns from the file; /predict names where they go."""
    body = assert_error_shape(http.post("/predict", json=req(cust(events=[
        {"timestamp": "2026-06-01T00:00:00", "event_type": "login", "channel": "web"}]))), 400,
        "customers[0].events[0].channel")
    assert '{"contacts": {"channel": "..."}}' in body["error"], body


def test_concurrent_callers_get_their_own_predictions(path, samples, reference):
    """Adaptive batching merges concurrent requests into one model call; nobody gets another
    caller's customer back, even when every caller uses the same customer id."""
    server = path[0]
    want = {i: p["churn_probability"] for i, p in enumerate(reference["predictions"])}
    jobs = [i for _ in range(4) for i in range(len(samples))]
    got: dict[int, list[tuple[int, dict]]] = {}

    def call(i: int) -> None:
        same_id = {**samples[i], "customer_id": "same"}
        with httpx.Client(base_url=server.url, timeout=120) as client:
            r = client.post("/predict", json={"customers": [same_id], "as_of": AS_OF_TEXT})
        got.setdefault(i, []).append((r.status_code, r.json()))

    threads = [threading.Thread(target=call, args=(i,)) for i in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sum(len(v) for v in got.values()) == len(jobs)
    for i, answers in got.items():
        for status, body in answers:
            assert status == 200, body
            (pred,) = body["predictions"]
            assert pred["customer_id"] == "same"
            assert abs(pred["churn_probability"] - want[i]) <= TOL


def test_reasons_off_skips_them(path, samples, reference):
    resp = path[1].post("/predict", json={"customers": samples[:2], "as_of": AS_OF_TEXT,
                                          "reasons": False})
    assert resp.status_code == 200, resp.text
    got_all = resp.json()["predictions"]
    assert len(got_all) == 2
    for got, want in zip(got_all, reference["predictions"][:2], strict=True):
        assert got["reasons"] == [] and got["lowering_reasons"] == []
        assert abs(got["churn_probability"] - want["churn_probability"]) <= TOL


def test_a_bad_customer_is_named_by_its_place_in_the_request(path, samples):
    late = cust(events=[{"timestamp": "2026-07-01T00:00:00", "event_type": "login"}])
    resp = path[1].post("/predict", json=req(samples[0], GOOD, late))
    assert resp.status_code == 400, resp.text
    assert resp.json()["field"] == "customers[2].events[0].timestamp"


# requests that once failed the whole merged batch, and with it every other caller in it
HOSTILE = [
    req(cust(events=[{"timestamp": "2026-07-01T00:00:00", "event_type": "login"}])),
    {"customers": [cust()], "as_of": "2300-01-01T00:00:00.5Z"},
    {"customers": [cust(signup_at="2300-01-01T00:00:00")], "as_of": "2300-01-02T00:00:00.5Z"},
]


def test_bad_callers_never_fail_good_ones_sharing_a_batch(path, samples, reference):
    server = path[0]
    want = reference["predictions"][0]["churn_probability"]
    good: list[tuple[int, dict]] = []
    bad: list[tuple[int, dict]] = []

    def call(body: dict, out: list) -> None:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            r = client.post("/predict", json=body)
        out.append((r.status_code, r.json()))

    jobs = [(req(samples[0]), good)] * 12 + [(h, bad) for h in HOSTILE for _ in range(4)]
    threads = [threading.Thread(target=call, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(good) == 12 and len(bad) == 4 * len(HOSTILE)
    for status, body in good:
        assert status == 200, body
        assert abs(body["predictions"][0]["churn_probability"] - want) <= TOL
    for status, body in bad:
        assert 400 <= status < 500 or status == 200, body  # a far-future as_of is allowed
        assert status != 200 or body["predictions"][0]["customer_id"] == "7"


def test_a_scorer_that_does_not_answer_in_time_costs_no_request(trained, tmp_path_factory,
                                                                samples, reference):
    """Every request goes to the scorer, which may take at most a millisecond: each call gives
    up, and the public process scores the request itself, with the same answer."""
    gen = _serve(trained, tmp_path_factory, CHURN_LOCAL_MAX_INFLIGHT="0",
                 CHURN_SCORER_TIMEOUT_S="0.001")
    srv = next(gen)
    try:
        with httpx.Client(base_url=srv.url, timeout=120) as client:
            body = predict(client, samples[:2])
        for got, want in zip(body["predictions"], reference["predictions"][:2], strict=True):
            assert abs(got["churn_probability"] - want["churn_probability"]) <= TOL
        assert "scoring in this process" in srv.log.read_text()
    finally:
        gen.close()


# --------------------------------------------------------------------------------------------
# A moved alias is picked up without a restart, and no request fails meanwhile
# --------------------------------------------------------------------------------------------


def test_alias_move_is_picked_up_without_restart(http, server, trained, samples):
    v0 = champion()
    wait_for_version(http, v0)
    proc = trained.churn("train", "--customers", str(trained.customers), "--events",
                         str(trained.events), "--label", "explicit", "--horizon", "30",
                         "--config", "weak.toml", "--json")
    weak = json.loads(proc.stdout)
    v1 = weak["model_version"]
    assert weak["aliases"] == ["challenger"] and v1 != v0
    before = predict(http, samples[:1])["predictions"][0]
    assert before["model_version"] == v0

    stop = threading.Event()
    results: list[tuple[int, str | None, str]] = []

    def stream() -> None:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=server.url, timeout=60) as client:
            while not stop.is_set() and len(results) < 300 and time.monotonic() < deadline:
                try:
                    r = client.post("/predict", json={"customers": samples[:1], "as_of": AS_OF_TEXT})
                    version = r.json().get("model_version") if r.status_code == 200 else None
                    results.append((r.status_code, version, r.text[:300]))
                except httpx.HTTPError as exc:
                    results.append((0, None, repr(exc)))
                time.sleep(0.05)

    worker = threading.Thread(target=stream, daemon=True)
    worker.start()
    try:
        time.sleep(1)
        trained.churn("promote", "--version", v1, "--force")
        info = wait_for_version(http, v1, 30)
        assert "champion" in info["aliases"]
        time.sleep(2)  # a few more requests against the new model
        stop.set()
        worker.join(30)
        assert not worker.is_alive()

        failed = [r for r in results if r[0] != 200]
        assert not failed, f"{len(failed)} of {len(results)} requests failed: {failed[:3]}"
        versions = [r[1] for r in results]
        assert set(versions) <= {v0, v1}
        assert versions[-1] == v1
        first_new = versions.index(v1)
        assert all(v == v1 for v in versions[first_new:]), "went back to the old model"

        after = predict(http, samples)
        assert after["model_version"] == v1
        assert all(p["model_version"] == v1 for p in after["predictions"])
        assert after["predictions"][0]["churn_probability"] != before["churn_probability"]
    finally:
        stop.set()
        worker.join(30)
        trained.churn("promote", "--version", v0, "--force")
        assert champion() == v0
        wait_for_version(http, v0, 30)
    again = predict(http, samples[:1])["predictions"][0]
    assert again["model_version"] == v0
    assert abs(again["churn_probability"] - before["churn_probability"]) <= TOL


def test_every_answer_is_computed_by_the_public_workers_version(trained, samples,
                                                                 tmp_path_factory):
    """Issue 26, point 6: the public worker and the scorer poll the alias apart, so for up to a
    poll interval after a move they hold different versions. Every request goes to the scorer
    here (CHURN_LOCAL_MAX_INFLIGHT=0), yet each answer names, and was computed by, the version
    the public worker held (GET /model before and after the call agree on it)."""
    from tests.helpers import Trained, churn_env, copy_store

    home = tmp_path_factory.mktemp("two-versions")
    copy_store(trained.home / "mlruns", home / "mlruns")
    uri = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    old = client.get_model_version_by_alias("churn", "champion")
    new = client.create_model_version("churn", old.source, old.run_id)
    for key, value in (old.tags or {}).items():  # whatever marks a version complete
        client.set_model_version_tag("churn", new.version, key, value)
    v0, v1 = str(old.version), str(new.version)
    gen = _serve(Trained(home, trained.data, churn_env(home), {}), tmp_path_factory,
                 CHURN_LOCAL_MAX_INFLIGHT="0", CHURN_RELOAD_INTERVAL_S="2")
    srv = next(gen)
    seen: list[tuple[str, str, list[str], str]] = []
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            moved_at, deadline = time.monotonic() + 1, time.monotonic() + 12
            moved = False
            while time.monotonic() < deadline:
                if not moved and time.monotonic() >= moved_at:
                    client.set_registered_model_alias("churn", "champion", v1)
                    moved = True
                before = http.get("/model").json()["version"]
                resp = http.post("/predict", json={"customers": samples[:1], "as_of": AS_OF_TEXT})
                assert resp.status_code == 200, resp.text
                body = resp.json()
                after = http.get("/model").json()["version"]
                seen.append((before, body["model_version"],
                             [p["model_version"] for p in body["predictions"]], after))
    finally:
        gen.close()
    assert {s[1] for s in seen} == {v0, v1}, "the move was not seen within the test"
    wrong = [s for s in seen if s[0] == s[3] and (s[1] != s[0] or set(s[2]) != {s[0]})]
    assert not wrong, f"{len(wrong)} of {len(seen)} answers by another version: {wrong[:3]}"


# --------------------------------------------------------------------------------------------
# `churn serve` refuses to start without a model
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["unknown version", "empty home"])
def test_serve_without_a_model_fails_cleanly(case, trained, tmp_path):
    env, args = dict(trained.env), ["--model", "models:/churn/999"]
    if case == "empty home":
        env["CHURN_HOME"], args = str(tmp_path), []
    start = time.monotonic()
    proc = subprocess.run([CHURN, "serve", "--host", "127.0.0.1", "--port", str(free_port()),
                           *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert elapsed < 60
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "--model" in lines[0] and "cannot load" in lines[0]
    if case == "unknown version":
        assert "models:/churn/999" in lines[0]
    else:
        assert "models:/churn@champion" in lines[0]


# --------------------------------------------------------------------------------------------
# Batch scoring over HTTP (a BentoML task)
# --------------------------------------------------------------------------------------------


def test_batch_task_scores_like_churn_score(http, server, trained, scores):
    with open(trained.customers, "rb") as c, open(trained.events, "rb") as e:
        resp = http.post("/batch/submit", data={"as_of": "2026-06-15"}, files={
            "customers": ("customers.parquet", c, "application/octet-stream"),
            "events": ("events.parquet", e, "application/octet-stream")})
    assert resp.status_code == 200, resp.text
    task_id = resp.json()["task_id"]

    deadline = time.monotonic() + 180
    status = {}
    while time.monotonic() < deadline:
        status = http.get("/batch/status", params={"task_id": task_id}).json()
        if status["status"] not in ("pending", "in_progress"):
            break
        # BentoML logs a task that crashed outside the endpoint but leaves it "in_progress"
        log = server.log.read_text(errors="replace")
        if f"{task_id} failed" in log:
            start = log.index(f"{task_id} failed")
            raise AssertionError(f"batch task {task_id} failed; server log:\n"
                                 f"{log[start - 200:start + 3000]}")
        time.sleep(0.5)
    assert status.get("status") == "completed", status

    result = http.get("/batch/get", params={"task_id": task_id})
    assert result.status_code == 200, result.text[:500]
    assert result.headers["content-type"] == "application/vnd.apache.parquet"
    assert f'filename="scores-{task_id}.parquet"' in result.headers["content-disposition"]
    got = pd.read_parquet(io.BytesIO(result.content))
    assert list(got.columns) == list(scores.columns)
    assert len(got) == len(scores)
    merged = got.merge(scores, on="customer_id", suffixes=("", "_cli"), validate="1:1")
    assert len(merged) == len(scores)
    np.testing.assert_allclose(merged["churn_probability"], merged["churn_probability_cli"],
                               rtol=0, atol=TOL)
    assert (merged["risk_band"] == merged["risk_band_cli"]).all()
    assert (merged["model_version"] == merged["model_version_cli"]).all()


def wait_for_job(http: httpx.Client, task_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        status = http.get("/batch/status", params={"task_id": task_id}).json()
        if status["status"] in ("completed", "failed"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"batch job {task_id} did not finish: {status}")


def test_batch_takes_the_targeting_options_of_churn_score(http, trained, tmp_path):
    """A job with a value column, offer terms and a number of reasons writes what `churn score`
    writes with the same options, so its output can feed the reviewer page."""
    customers = pd.read_parquet(trained.customers).head(300)
    events = pd.read_parquet(trained.events)
    events = events[events["customer_id"].isin(customers["customer_id"])]
    customers.to_parquet(tmp_path / "c.parquet")
    events.to_parquet(tmp_path / "e.parquet")
    options = {"value_column": "seats", "value_multiplier": "6", "offer_cost": "3",
               "save_rate": "0.4", "top_reasons": "2", "as_of": "2026-06-15"}
    with open(tmp_path / "c.parquet", "rb") as c, open(tmp_path / "e.parquet", "rb") as e:
        resp = http.post("/batch/submit", data=options, files={"customers": c, "events": e})
    assert resp.status_code == 200, resp.text
    job = resp.json()
    assert job["status"] == "pending"
    assert (job["value_column"], job["value_multiplier"], job["offer_cost"], job["save_rate"],
            job["top_reasons"]) == ("seats", 6.0, 3.0, 0.4, 2)
    status = wait_for_job(http, job["task_id"])
    assert status["status"] == "completed", status
    got = pd.read_parquet(io.BytesIO(http.get("/batch/get", params={
        "task_id": job["task_id"]}).content))

    out = tmp_path / "cli.parquet"
    subprocess.run([CHURN, "score", "--customers", str(tmp_path / "c.parquet"), "--events",
                    str(tmp_path / "e.parquet"), "--as-of", "2026-06-15", "--out", str(out),
                    "--model", job["model"], "--value-column", "seats", "--value-multiplier",
                    "6", "--offer-cost", "3", "--save-rate", "0.4"], cwd=trained.home,
                   env={**trained.env, "CHURN_TOP_REASONS": "2"}, check=True,
                   capture_output=True, timeout=600)
    want = pd.read_parquet(out)
    assert list(got.columns) == list(want.columns)
    assert "reason_2_feature" in got and "reason_3_feature" not in got  # two reasons
    assert {"customer_value", "expected_value_at_risk", "contact"} <= set(got.columns)
    merged = got.merge(want, on="customer_id", suffixes=("", "_cli"), validate="1:1")
    assert len(merged) == len(want) > 0
    for column in ("churn_probability", "customer_value", "expected_value_at_risk"):
        np.testing.assert_allclose(merged[column], merged[f"{column}_cli"], rtol=0, atol=TOL)
    assert (merged["contact"] == merged["contact_cli"]).all()
    # the value is the seats times the multiplier, not the default value column
    seats = customers.set_index(customers["customer_id"].astype(str))["seats"]
    np.testing.assert_allclose(got["customer_value"], 6 * seats.loc[got["customer_id"]].to_numpy(),
                               rtol=1e-9)
    assert got["contact"].any() and not got["contact"].all()


@pytest.mark.parametrize("field,value,words", [
    ("save_rate", "1.5", "at most 1"), ("offer_cost", "-2", "at least 0"),
    ("top_reasons", "0", "at least 1"), ("value_multiplier", "lots", "not a number"),
    ("value_column", "no_such_column", "neither a feature nor a numeric attribute"),
    ("as_of", "06/15/2026", "use ISO 8601"),
])
def test_bad_batch_options_are_refused_before_any_job(http, field, value, words):
    files = {"customers": ("c.csv", b"customer_id,signup_at\n1,2025-01-01\n", "text/csv"),
             "events": ("e.csv", b"customer_id,timestamp,event_type\n1,2026-05-01,login\n",
                        "text/csv")}
    body = assert_error_shape(http.post("/batch/submit", data={field: value}, files=files), 400,
                              field)
    assert words in body["error"], body


def test_a_loopback_server_answers_only_to_loopback_names(http, server):
    """`churn serve` on 127.0.0.1 narrows the Host allow-list: a DNS-rebinding page reaches it
    under its own name and is refused."""
    port = server.url.rsplit(":", 1)[1]
    resp = http.get("/model", headers={"Host": f"rebind.attacker.example:{port}"})
    assert resp.status_code == 400 and resp.json()["field"] == "Host"
    for name in ("localhost", "127.0.0.1", "[::1]"):
        assert http.get("/model", headers={"Host": f"{name}:{port}"}).status_code == 200


# --------------------------------------------------------------------------------------------
# A killed scorer is replaced (last in this module: it kills the scorer_server's scorer)
# --------------------------------------------------------------------------------------------


def _scorer_pid(server: Server) -> int | None:
    for child in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            args = child.cmdline()
        except psutil.Error:
            continue
        if "--service-name" in args and args[args.index("--service-name") + 1] == "churn_scorer":
            return child.pid
    return None


def test_a_killed_scorer_is_replaced_and_scores_again(scorer_server, scorer_http, samples,
                                                      reference):
    """SIGKILL to the scorer: the arbiter starts a new one (serving.launcher checks every second),
    every call meanwhile is answered (by the public process), and afterwards the new scorer
    gives the same answers. The arbiter's checks never collide with its own commands."""
    assert "serving.launcher" in psutil.Process(scorer_server.proc.pid).cmdline()
    old = _scorer_pid(scorer_server)
    assert old is not None
    started = _scorer_starts(scorer_server)
    os.kill(old, signal.SIGKILL)
    new, deadline = None, time.monotonic() + 120
    while time.monotonic() < deadline:
        body = predict(scorer_http, samples[:1])  # asserts 200
        assert abs(body["predictions"][0]["churn_probability"]
                   - reference["predictions"][0]["churn_probability"]) <= TOL
        new = _scorer_pid(scorer_server)
        if new not in (None, old) and _scorer_starts(scorer_server) > started:
            break
        time.sleep(0.2)
    assert new not in (None, old), "no new scorer within 120 s"
    body = predict(scorer_http, samples)
    for got, want in zip(body["predictions"], reference["predictions"], strict=True):
        assert abs(got["churn_probability"] - want["churn_probability"]) <= TOL
    log = scorer_server.log.read_text(errors="replace")
    assert "ConflictError" not in log and "Exception in callback" not in log


def _scorer_starts(server: Server) -> int:
    """How many times the log says a scorer finished starting."""
    return sum("[service:churn_scorer" in line and "initialized" in line
               for line in server.log.read_text(errors="replace").splitlines())
