"""The service under attack and misuse, over real HTTP against `churn serve` (issue #12).

One server runs with security switched on (API keys, a reviewer password, a Host allow-list,
small body limits); every test talks to it as a client, a hostile page or a careless user
would. The registry-replacement test runs its own server on a copy of the store."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import io
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.helpers import Trained, churn_env, copy_store
from tests.integration.test_serving import _serve

API_KEY, REVIEW_KEY = "k-api-1", "k-review-1"
MAX_BODY = 200_000
MAX_UPLOAD = 3_000_000
MAX_PENDING = 3
SECURE_ENV = {
    "CHURN_API_KEYS": f"other-key,{API_KEY}",
    "CHURN_REVIEW_KEYS": REVIEW_KEY,
    "CHURN_ALLOWED_HOSTS": "127.0.0.1,localhost",
    "CHURN_MAX_BODY_BYTES": str(MAX_BODY),
    "CHURN_BATCH_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
    "CHURN_BATCH_MAX_PENDING": str(MAX_PENDING),
    "CHURN_MAX_ID_CHARS": "40",
}
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def secure(trained, tmp_path_factory):
    jobs = tmp_path_factory.mktemp("jobs")
    for srv in _serve(trained, tmp_path_factory, **SECURE_ENV, CHURN_BATCH_DIR=str(jobs)):
        srv.jobs = jobs
        yield srv


@pytest.fixture(scope="module")
def api(secure):
    with httpx.Client(base_url=secure.url, timeout=120, headers=AUTH) as client:
        yield client


@pytest.fixture(scope="module")
def anon(secure):
    with httpx.Client(base_url=secure.url, timeout=120) as client:
        yield client


def customer(cid: object = "c1", **changes) -> dict:
    base = {"customer_id": cid, "signup_at": "2025-01-01T00:00:00Z", "attributes": {},
            "events": [{"timestamp": "2026-05-01T10:00:00Z", "event_type": "login"}]}
    return {**base, **changes}


def predict_body(**changes) -> dict:
    return {"customers": [customer()], "as_of": "2026-06-15T00:00:00Z", **changes}


def assert_names(resp: httpx.Response, status: int, field: str) -> dict:
    assert resp.status_code == status, resp.text[:500]
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert isinstance(body["error"], str) and body["error"]
    assert body.get("field") == field, body
    return body


# --------------------------------------------------------------------------------------------
# credentials
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/model", "/metrics", "/batch/status?task_id=x"])
def test_api_and_metrics_refuse_a_caller_without_a_key(anon, route):
    resp = anon.get(route)
    assert_names(resp, 401, "Authorization")
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert_names(anon.get(route, headers={"Authorization": "Bearer wrong"}), 401, "Authorization")


def test_predict_takes_the_key_as_bearer_or_x_api_key(anon):
    assert_names(anon.post("/predict", json=predict_body()), 401, "Authorization")
    for headers in (AUTH, {"X-API-Key": API_KEY}, {"Authorization": "Bearer other-key"}):
        resp = anon.post("/predict", json=predict_body(), headers=headers)
        assert resp.status_code == 200, resp.text[:300]
        assert resp.json()["predictions"][0]["customer_id"] == "c1"


def test_health_checks_and_metrics_with_a_key_stay_available(anon, api):
    assert anon.get("/readyz").status_code == 200
    assert anon.get("/livez").status_code == 200
    assert api.get("/metrics").status_code == 200


def test_review_has_its_own_password(anon):
    resp = anon.get("/review/")
    assert_names(resp, 401, "Authorization")
    assert resp.headers["www-authenticate"].startswith("Basic")
    # the API key does not open the reviewer page, and a wrong password does not either
    assert anon.get("/review/", headers=AUTH).status_code == 401
    wrong = base64.b64encode(b"reviewer:nope").decode()
    assert anon.get("/review/", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    good = base64.b64encode(f"reviewer:{REVIEW_KEY}".encode()).decode()
    resp = anon.get("/review/", headers={"Authorization": f"Basic {good}"})
    assert resp.status_code in (200, 503), resp.text[:300]  # 503: no scores configured
    assert "text/html" in resp.headers["content-type"]


# --------------------------------------------------------------------------------------------
# a hostile browser: Host, Origin, content type, headers
# --------------------------------------------------------------------------------------------


def test_a_host_name_not_served_is_refused(api, secure):
    port = secure.url.rsplit(":", 1)[1]
    assert_names(api.get("/model", headers={"Host": f"attacker.example:{port}"}), 400, "Host")
    assert_names(api.get("/readyz", headers={"Host": "attacker.example"}), 400, "Host")
    assert api.get("/model", headers={"Host": f"localhost:{port}"}).status_code == 200


def test_a_cross_origin_post_is_refused(api, secure):
    resp = api.post("/predict", json=predict_body(), headers={"Origin": "http://evil.example"})
    assert_names(resp, 403, "Origin")
    files = {"customers": ("c.csv", b"customer_id,signup_at\n1,2025-01-01\n"),
             "events": ("e.csv", b"customer_id,timestamp,event_type\n1,2025-02-01,login\n")}
    resp = api.post("/batch/submit", files=files, headers={"Origin": "http://evil.example"})
    assert_names(resp, 403, "Origin")
    # the service's own origin may post (a page it serves)
    same = api.post("/predict", json=predict_body(), headers={"Origin": secure.url})
    assert same.status_code == 200, same.text[:300]


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", None])
def test_json_endpoints_accept_only_json(api, kind):
    headers = {} if kind is None else {"Content-Type": kind}
    for route in ("/predict", "/explain", "/predict_features"):
        resp = api.post(route, content=json.dumps(predict_body()), headers=headers)
        body = assert_names(resp, 415, "Content-Type")
        assert "application/json" in body["error"] and body["detail"]


def test_a_form_is_not_json_and_json_is_not_an_upload(api):
    """A form posted to a JSON endpoint once came back as "extra_forbidden" with the whole
    body as a field name; an upload endpoint given JSON names the content type too."""
    for route in ("/predict", "/explain", "/predict_features"):
        form = api.post(route, data={"customers": "[]"})
        assert_names(form, 415, "Content-Type")
        upload = api.post(route, files={"customers": ("c.json", b"{}", "application/json")})
        body = assert_names(upload, 415, "Content-Type")
        assert "extra_forbidden" not in upload.text and "multipart/form-data" in body["error"]
    for kind, payload in (("application/json", b'{"customers": "x"}'), ("text/plain", b"x"),
                          (None, b"x")):
        headers = {} if kind is None else {"Content-Type": kind}
        body = assert_names(api.post("/batch/submit", content=payload, headers=headers), 415,
                            "Content-Type")
        assert "multipart/form-data" in body["error"]


@pytest.mark.parametrize("route", ["/model", "/review/", "/predict", "/readyz", "/nope"])
def test_every_response_carries_security_headers(api, route):
    resp = api.post(route, json={}) if route == "/predict" else api.get(route)
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "no-referrer"


# --------------------------------------------------------------------------------------------
# bounds
# --------------------------------------------------------------------------------------------


def test_a_declared_body_past_the_limit_is_refused_before_it_is_read(api):
    big = json.dumps(predict_body(customers=[customer(f"c{i}") for i in range(2000)]))
    assert len(big) > MAX_BODY
    body = assert_names(api.post("/predict", content=big,
                                 headers={"Content-Type": "application/json"}), 413, "body")
    assert str(MAX_BODY) in body["error"]


def test_a_streamed_body_past_the_limit_is_refused(api):
    chunk = b" " * 50_000

    def stream():
        yield b'{"customers": [], "pad": "'
        for _ in range(10):
            yield chunk
    resp = api.post("/predict", content=stream(), headers={"Content-Type": "application/json"})
    assert_names(resp, 413, "body")


def _answer_and_close(url: str, request: bytes, wait: float = 3.0) -> tuple[bytes, bool]:
    """Send `request` (a body cut short) on a raw socket, read the answer, then keep sending
    more of the body as a slow client would: (the answer, whether the server closed the
    connection within `wait` seconds). A server that keeps reading never closes; the
    keep-alive timeout does not run while bytes arrive."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < int(
                re.search(rb"content-length: (\d+)", answer.lower()).group(1)):
            chunk = sock.recv(65536)
            if not chunk:
                return answer, True
            answer += chunk
        sock.settimeout(0.2)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                sock.sendall(b" " * 1000)
                if sock.recv(65536) == b"":
                    return answer, True
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return answer, True
        return answer, False


@pytest.mark.parametrize("framing", ["declared", "chunked"])
def test_a_413_closes_the_connection_without_reading_the_rest(secure, framing):
    """Issue 26, point 8: after a 413 the server said nothing about the connection and kept
    reading the rest of the body; it answers `Connection: close` and closes at once."""
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
            "Content-Type: application/json\r\n").encode()
    part = b'{"customers": [], "pad": "' + b" " * (MAX_BODY + 1000)
    if framing == "declared":  # 50 MB announced, a little sent: refused from the header
        request = head + b"Content-Length: 50000000\r\n\r\n" + part[:1000]
    else:  # no length, one 50 MB chunk: refused once what was read passes the limit
        request = head + b"Transfer-Encoding: chunked\r\n\r\n" + \
            f"{50_000_000:x}\r\n".encode() + part
    answer, closed = _answer_and_close(secure.url, request)
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 413"), answer[:300]
    headers = rest.split(b"\r\n\r\n", 1)[0].lower()
    assert b"connection: close" in headers, headers
    assert closed, "the server kept the connection open after its 413, waiting for the body"


def test_long_ids_and_strings_are_refused_by_field(api):
    assert_names(api.post("/predict", json=predict_body(customers=[customer("x" * 41)])), 400,
                 "customers[0].customer_id")
    rows = {"rows": [{"customer_id": "y" * 41}]}
    assert_names(api.post("/predict_features", json=rows), 400, "rows[0].customer_id")


@pytest.mark.parametrize("bad_id", ["a\x00b", "line\nbreak", "tab\there"])
def test_ids_with_control_characters_are_refused_by_field(api, bad_id):
    """Ids are stored (the prediction log), logged and shown: a NUL would fail a PostgreSQL
    batch of other callers' records, a line break forges log lines."""
    good = customer("fine-1")
    resp = api.post("/predict", json=predict_body(customers=[good, customer(bad_id)]))
    body = assert_names(resp, 400, "customers[1].customer_id")
    assert "control character" in str(body)
    rows = {"rows": [{"customer_id": "ok"}, {"customer_id": bad_id}]}
    assert_names(api.post("/predict_features", json=rows), 400, "rows[1].customer_id")


# --------------------------------------------------------------------------------------------
# strict JSON: numbers are not times, 0 is not a boolean, false is not an id
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    predict_body(as_of=1750000000),
    predict_body(customers=[customer(signup_at=5)]),
    predict_body(customers=[customer(events=[{"timestamp": 1.5e9, "event_type": "login"}])]),
    predict_body(reasons=0),
    predict_body(reasons="yes"),
    predict_body(customers=[customer(False)]),
    predict_body(customers=[customer(1.0)]),
], ids=["as_of number", "signup number", "event time number", "reasons 0", "reasons text",
        "id false", "id float"])
def test_ambiguous_json_values_are_refused(api, body):
    resp = api.post("/predict", json=body)
    assert resp.status_code == 400, resp.text[:300]
    assert isinstance(resp.json()["error"], str)


def test_ids_are_text_as_written_and_times_carry_their_offset(api):
    resp = api.post("/predict", json=predict_body(customers=[customer(7), customer("007")]))
    assert resp.status_code == 200, resp.text[:300]
    body = resp.json()
    assert [p["customer_id"] for p in body["predictions"]] == ["7", "007"]
    assert body["as_of"].endswith(("Z", "+00:00"))


def test_feature_rows_refuse_infinity_and_negative_counts(api):
    names = api.get("/model").json()["features"]
    row = dict.fromkeys(names, 0.0) | {"customer_id": "r1", names[0]: float("inf")}
    resp = api.post("/predict_features", content=json.dumps({"rows": [row]}),
                    headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text[:300]
    assert api.post("/predict_features", json={"rows": [row | {names[0]: 1.0}]}).status_code == 200
    for name in ("tenure_days", "n_events_30d", "days_since_last_event"):
        resp = api.post("/predict_features", json={"rows": [row | {names[0]: 1.0, name: -3.0}]})
        assert_names(resp, 400, f"rows[0].{name}")


# --------------------------------------------------------------------------------------------
# /batch: bad input is refused at submit or reported in one line by the job
# --------------------------------------------------------------------------------------------


def submit(api, customers: bytes | None, events: bytes | None, **data):
    files = {}
    if customers is not None:
        files["customers"] = ("customers.csv", customers, "text/csv")
    if events is not None:
        files["events"] = ("events.csv", events, "text/csv")
    return api.post("/batch/submit", files=files or None, data=data or None)


def wait(api, task_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.get("/batch/status", params={"task_id": task_id}).json()
        if status["status"] in ("completed", "failed"):
            return status
        time.sleep(0.3)
    raise AssertionError(f"batch job {task_id} did not finish: {status}")


CUSTOMERS = b"customer_id,signup_at,plan\n1,2025-01-01,basic\n2,2025-02-01,pro\n"
EVENTS = b"customer_id,timestamp,event_type\n1,2026-05-01,login\n2,2026-05-02,login\n"


@pytest.mark.parametrize("customers,events,data,field", [
    (CUSTOMERS, None, {}, "events"),
    (None, EVENTS, {}, "customers"),
    (b"", EVENTS, {}, "customers"),
    (CUSTOMERS, EVENTS, {"as_of": "the day after tomorrow"}, "as_of"),
    (CUSTOMERS, EVENTS, {"as_of": "2026-06-15", "colour": "red"}, "colour"),
], ids=["no events file", "no customers file", "empty file", "unparseable as_of",
        "unknown field"])
def test_batch_submit_refuses_incomplete_input(api, customers, events, data, field):
    assert_names(submit(api, customers, events, **data), 400, field)


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


# a Parquet time of day where the timestamp belongs: the engine itself refused it
TIME_OF_DAY = _parquet(pd.DataFrame({
    "customer_id": [1, 2], "timestamp": [dt.time(9, 30), dt.time(10, 0)],
    "event_type": ["login", "login"]}))
ENGINE_WORDS = ("Binder Error", "Conversion Error", "Invalid Input Error", "Exception")


@pytest.mark.parametrize("customers,events,words", [
    (b"\x00\x01garbage\xff\xfe" * 50, EVENTS, "customers"),
    (b"customer_id,plan\n1,basic\n", EVENTS, "signup_at"),
    (CUSTOMERS, b"customer_id,timestamp\n1,2026-05-01\n", "event_type"),
    (b"customer_id,signup_at\n", EVENTS, "customers"),
    (CUSTOMERS, b"customer_id,timestamp,event_type\n1,yesterday-ish,login\n", "timestamp"),
    (CUSTOMERS, TIME_OF_DAY, "the events file: column 'timestamp': expected dates or "
     "timestamps, got values of type TIME (e.g. timestamp='09:30:00')"),
], ids=["garbage", "missing column", "events missing column", "header only", "wrong types",
        "time of day in Parquet"])
def test_a_batch_job_on_bad_input_fails_with_one_line(api, customers, events, words):
    """Bad content fails the job with the CLI's one line, naming the upload and the column,
    and /batch/get answers 422 with it, whatever the engine raised."""
    resp = submit(api, customers, events, as_of="2026-06-15")
    assert resp.status_code == 200, resp.text[:300]
    task_id = resp.json()["task_id"]
    status = wait(api, task_id)
    assert status["status"] == "failed", status
    assert words in status["error"] and "\n" not in status["error"], status
    assert "Traceback" not in status["error"] and "/tmp" not in status["error"]
    assert not any(w in status["error"] for w in ENGINE_WORDS), status
    got = api.get("/batch/get", params={"task_id": task_id})
    assert got.status_code == 422, got.text[:300]
    assert got.json()["error"] == status["error"]


def _error_schema_holds(spec: dict, body: dict) -> None:
    """`body` against the document's Error schema: the required fields, their types, and no
    field the schema does not list."""
    schema = spec["components"]["schemas"]["Error"]
    assert set(schema["required"]) <= set(body) <= set(schema["properties"]), body
    types = {"string": str, "integer": int}
    for key, value in body.items():
        assert isinstance(value, types[schema["properties"][key]["type"]]), (key, body)


def test_every_documented_error_is_what_the_server_answers(api, anon):
    """Each error status /docs.json documents for an operation is provoked on the live server
    and its answer checked against the documented schema. A 500 cannot be provoked from
    outside (it is a failure of ours) and is the only status left out."""
    spec = anon.get("/docs.json").json()
    big = b"x" * (MAX_BODY + 1)
    json_bad = {"/predict": {"customers": [customer(signup_at="03/10/2025")]},
                "/explain": {**customer(), "as_of": "06/15/2026"},
                "/predict_features": {"rows": [{"customer_id": "r1"}]}}
    provoked: dict[tuple[str, str, str], httpx.Response] = {}
    for path, body in json_bad.items():
        provoked[path, "post", "400"] = api.post(path, json=body)
        provoked[path, "post", "401"] = anon.post(path, json=body)
        provoked[path, "post", "403"] = api.post(path, json=body,
                                                 headers={"Origin": "http://evil.example"})
        provoked[path, "post", "413"] = api.post(path, content=big,
                                                 headers={"Content-Type": "application/json"})
        provoked[path, "post", "415"] = api.post(path, content=b"{}",
                                                 headers={"Content-Type": "text/plain"})
    provoked["/model", "get", "401"] = anon.get("/model")
    for path in ("/batch/status", "/batch/get"):
        provoked[path, "get", "400"] = api.get(path)
        provoked[path, "get", "401"] = anon.get(path, params={"task_id": "0" * 32})
        provoked[path, "get", "404"] = api.get(path, params={"task_id": "0" * 32})
    files = {"customers": ("c.csv", CUSTOMERS, "text/csv"), "events": ("e.csv", EVENTS, "text/csv")}
    submit_path = ("/batch/submit", "post")
    provoked[(*submit_path, "400")] = api.post("/batch/submit", files=files,
                                               data={"save_rate": "2"})
    provoked[(*submit_path, "401")] = anon.post("/batch/submit", files=files)
    provoked[(*submit_path, "403")] = api.post("/batch/submit", files=files,
                                               headers={"Origin": "http://evil.example"})
    provoked[(*submit_path, "413")] = submit(api, b"x" * (MAX_UPLOAD + 1), EVENTS)
    provoked[(*submit_path, "415")] = api.post("/batch/submit", json={"customers": "x"})
    # a job on bad input (422 once failed), then jobs up to the limit: the last waits (409)
    # and the next submit is refused (429); jobs take seconds, submits milliseconds
    bad = submit(api, b"customer_id,plan\n1,basic\n", EVENTS, as_of="2026-06-15").json()
    waiting, refused = None, None
    for _ in range(MAX_PENDING + 1):
        resp = submit(api, CUSTOMERS, EVENTS, as_of="2026-06-15")
        if resp.status_code == 429:
            refused = resp
            break
        assert resp.status_code == 200, resp.text[:300]
        waiting = resp.json()["task_id"]
    assert refused is not None and waiting is not None
    provoked[(*submit_path, "429")] = refused
    provoked["/batch/get", "get", "409"] = api.get("/batch/get", params={"task_id": waiting})
    assert wait(api, bad["task_id"])["status"] == "failed"
    provoked["/batch/get", "get", "422"] = api.get("/batch/get",
                                                   params={"task_id": bad["task_id"]})
    wait(api, waiting, timeout=300)  # the queue is empty again for the tests that follow

    documented = {(path, method, status) for path, item in spec["paths"].items()
                  for method, op in item.items() for status in op["responses"]
                  if int(status) >= 400}
    assert documented - set(provoked) == {d for d in documented if d[2] == "500"}
    for (path, method, status), resp in provoked.items():
        assert (path, method, status) in documented, (path, method, status)
        assert str(resp.status_code) == status, (path, method, status, resp.text[:300])
        assert resp.headers["content-type"].startswith("application/json"), (path, status)
        _error_schema_holds(spec, resp.json())


def test_batch_upload_past_the_limit_is_refused(api):
    resp = submit(api, b"x" * (MAX_UPLOAD + 1), EVENTS)
    assert_names(resp, 413, "body")


@pytest.mark.parametrize("task_id", ["0" * 32, "../../etc/passwd", "x" * 5000])
def test_unknown_batch_tasks_are_404(api, task_id):
    assert_names(api.get("/batch/status", params={"task_id": task_id}), 404, "task_id")
    assert_names(api.get("/batch/get", params={"task_id": task_id}), 404, "task_id")


def test_batch_jobs_keep_uploads_as_files_and_drop_them_when_done(api, trained, secure):
    resp = submit(api, CUSTOMERS, gzip.compress(EVENTS), as_of="2026-06-15")
    task_id = resp.json()["task_id"]
    status = wait(api, task_id)
    assert status["status"] == "completed", status
    folder = secure.jobs / task_id
    assert sorted(p.name for p in folder.iterdir()) == ["job.json", "scores.parquet"]
    got = api.get("/batch/get", params={"task_id": task_id})
    assert got.status_code == 200
    assert pd.read_parquet(io.BytesIO(got.content))["customer_id"].tolist() == ["1", "2"]


def test_a_batch_job_says_how_it_used_the_columns(api):
    """A completed job carries `churn score`'s notes as `warnings`: a text column the model
    was trained without, and the model's columns these files lack, with the uploads named by
    their field, never by our path."""
    events = (b"customer_id,timestamp,event_type,channel\n1,2026-05-01,login,web\n"
              b"2,2026-05-02,login,app\n")
    status = wait(api, submit(api, CUSTOMERS, events, as_of="2026-06-15").json()["task_id"])
    assert status["status"] == "completed", status
    warnings = status["warnings"]
    assert ("the events file: column 'channel' is text: read as a point of contact (contact "
            "features)") in warnings, warnings
    (columns,) = [w for w in warnings if w.startswith("columns used: ")]
    assert "left out: channel (the model was trained without it)" in columns, columns
    assert "not in these files, read as missing: amount, seats, contract" in columns, columns
    assert "/tmp" not in " ".join(warnings)
    plain = wait(api, submit(api, CUSTOMERS, EVENTS, as_of="2026-06-15").json()["task_id"])
    assert "channel" not in " ".join(plain["warnings"])


def test_client_errors_log_one_line_not_a_traceback(api, secure):
    api.post("/predict", json={"customers": "nope"})
    api.post("/predict", json=predict_body(reasons=0))
    time.sleep(0.5)
    log = secure.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


# --------------------------------------------------------------------------------------------
# registry liveness
# --------------------------------------------------------------------------------------------


def test_an_alias_move_is_seen_after_the_registry_file_is_replaced(trained, tmp_path_factory):
    """A restore from backup moves another file into place; the poller must reopen it."""
    home = tmp_path_factory.mktemp("replaced")
    copy_store(trained.home / "mlruns", home / "mlruns")
    db = home / "mlruns" / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")
    champion = client.get_model_version_by_alias("churn", "champion")
    other = client.create_model_version("churn", champion.source, champion.run_id)
    gen = _serve(Trained(home, trained.data, churn_env(home), {}), tmp_path_factory,
                 CHURN_RELOAD_INTERVAL_S="0.5", CHURN_MAX_POLL_AGE_S="3")
    srv = next(gen)
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            before = http.get("/model").json()
            assert before["version"] == str(champion.version)
            assert before["last_poll"] is not None and before["poll_error"] is None
            backup = home / "mlruns" / "restored.db"
            with sqlite3.connect(db) as src, sqlite3.connect(backup) as dst:
                src.backup(dst)
            MlflowClient(registry_uri=f"sqlite:///{backup}").set_registered_model_alias(
                "churn", "champion", other.version)
            os.replace(backup, db)
            deadline, seen = time.monotonic() + 30, before["version"]
            while time.monotonic() < deadline and seen != str(other.version):
                time.sleep(0.5)
                seen = http.get("/model").json()["version"]
            assert seen == str(other.version)
            assert http.get("/readyz").status_code == 200

            # a registry that cannot be read: the model keeps serving, /model says why, and
            # /readyz turns unready after CHURN_MAX_POLL_AGE_S
            broken = home / "mlruns" / "broken.db"
            broken.write_bytes(b"not a database" * 100)
            os.replace(broken, db)
            deadline, ready = time.monotonic() + 30, 200
            while time.monotonic() < deadline and ready == 200:
                time.sleep(0.5)
                ready = http.get("/readyz").status_code
            assert ready == 503
            info = http.get("/model").json()
            assert info["version"] == str(other.version) and info["poll_error"]
    finally:
        gen.close()


def test_a_registry_moved_away_is_reported_in_one_line_and_never_created(trained,
                                                                         tmp_path_factory):
    """Issue 26, point 5: the service opens the registry read only. Moved away under a running
    service, the registry stays missing (no empty mlflow.db in its place), /model, /readyz and
    the log say so in one plain line (no SQL), the model keeps serving, and it is read again
    once it is back."""
    home = tmp_path_factory.mktemp("moved-away")
    copy_store(trained.home / "mlruns", home / "mlruns")
    db = home / "mlruns" / "mlflow.db"
    gen = _serve(Trained(home, trained.data, churn_env(home), {}), tmp_path_factory,
                 CHURN_RELOAD_INTERVAL_S="0.5", CHURN_MAX_POLL_AGE_S="4")
    srv = next(gen)
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            before = http.get("/model").json()
            assert before["poll_error"] is None
            stamp = db.stat().st_mtime_ns
            away = home / "away.db"
            os.replace(db, away)
            deadline, info = time.monotonic() + 30, before
            while time.monotonic() < deadline and not info["poll_error"]:
                time.sleep(0.5)
                info = http.get("/model").json()
            problem = info["poll_error"]
            assert problem and "is missing" in problem and str(db) in problem, info
            assert "\n" not in problem and "[SQL" not in problem and "sqlalche" not in problem
            assert info["version"] == before["version"]
            resp = http.post("/predict", json=predict_body())
            assert resp.status_code == 200 and resp.json()["model_version"] == before["version"]

            deadline, ready = time.monotonic() + 30, http.get("/readyz")
            while time.monotonic() < deadline and ready.status_code == 200:
                assert not db.exists(), "the service created the registry it could not find"
                assert problem in ready.text
                time.sleep(0.5)
                ready = http.get("/readyz")
            assert ready.status_code == 503
            assert ready.text.strip() == f"not ready: {problem}"
            assert not db.exists(), "the service created the registry it could not find"
            assert not any(p.name.startswith("mlflow.db") for p in db.parent.iterdir())

            os.replace(away, db)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (info["poll_error"] or ready.status_code != 200):
                time.sleep(0.5)
                info, ready = http.get("/model").json(), http.get("/readyz")
            assert info["poll_error"] is None and ready.status_code == 200
            assert db.stat().st_mtime_ns == stamp, "the service wrote to the registry"
        log = srv.log.read_text(errors="replace")
        lines = [line for line in log.splitlines() if "is missing" in line]
        assert lines and all("[SQL" not in line and "Traceback" not in line for line in lines)
        assert "[SQL" not in log
    finally:
        gen.close()


# --------------------------------------------------------------------------------------------
# conformance: a bounded schemathesis run against the live service
# --------------------------------------------------------------------------------------------

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))


def test_fuzzed_requests_get_no_5xx_and_every_response_matches_the_schema(secure, tmp_path):
    """Every check but `positive_data_acceptance`: a schema-valid body can still be refused for
    what JSON Schema cannot say (an event after as_of, a feature the served model lacks)."""
    proc = subprocess.run(
        [SCHEMATHESIS, "run", f"{secure.url}/docs.json", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance", "--max-examples", "300", "--seed", "12",
         # every accepted upload starts a `churn score` process: its errors are tested above
         "--exclude-path", "/batch/submit",
         "--header", f"Authorization: Bearer {API_KEY}", "--request-timeout", "60",
         "--generation-database", "none", "--no-color"],
        capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path)
    summary = proc.stdout[-3000:]
    assert proc.returncode == 0, summary
    cases = re.search(r"(\d+) generated", proc.stdout)
    assert cases is not None and int(cases.group(1)) >= 500, summary
    log = secure.log.read_text(errors="replace")
    assert not re.search(r"status=5\d\d", log), "a 5xx in the server log"
    assert "Traceback" not in log


# What JSON Schema cannot say, and only that, is configured: a size past a limit is a 413
# (CHURN_MAX_BODY_BYTES, the customers of one request), whatever the schema allows; and on the
# two history endpoints a schema-valid body can still be a 400 naming the field for a rule
# across fields (an event at or after as_of). /predict_features is held to the schema alone.
SCHEMATHESIS_TOML = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422",
                     "428", "429", "5XX"]

[checks.positive_data_acceptance]
expected-statuses = ["2XX", "3XX", "401", "403", "404", "409", "413", "429", "5XX"]

[[operations]]
include-path-regex = "^/(predict|explain)$"
checks.positive_data_acceptance.expected-statuses = ["2XX", "400", "413"]
"""


def run_schemathesis(url: str, folder: Path, *args: str) -> subprocess.CompletedProcess:
    (folder / "schemathesis.toml").write_text(SCHEMATHESIS_TOML)
    return subprocess.run(
        [SCHEMATHESIS, "--config-file", str(folder / "schemathesis.toml"), "run",
         f"{url}/docs.json", "--checks", "all", "--header", f"Authorization: Bearer {API_KEY}",
         "--request-timeout", "60", "--generation-database", "none", "--no-color", *args],
        capture_output=True, text=True, timeout=300, check=False, cwd=folder)


def test_a_bounded_fuzz_with_every_check_finds_nothing(secure, tmp_path):
    """Issue 26, point 7: every check, positive data acceptance included, against the document
    the service publishes for its model (required bodies, the model's features and bounds,
    ids as the service reads them). Bounded to stay under a minute; /batch/submit is left out
    as above (every accepted upload starts a scoring process)."""
    start = time.monotonic()
    proc = run_schemathesis(secure.url, tmp_path, "--max-examples", "25", "--seed", "26",
                            "--exclude-path", "/batch/submit")
    summary = proc.stdout[-4000:]
    assert proc.returncode == 0, summary
    assert "generated" in proc.stdout and time.monotonic() - start < 90
    log = secure.log.read_text(errors="replace")
    assert not re.search(r"status=5\d\d", log), "a 5xx in the server log"


def test_metrics_label_requests_by_route_so_paths_cannot_grow_them(api, anon):
    """Every distinct path once added its own series (memory that never came back)."""
    for i in range(5):
        anon.get(f"/no-such-page-{i}")
        api.get(f"/review/customer/someone-{i}")
    text = api.get("/metrics").text
    assert "no-such-page" not in text and "someone-" not in text
    assert 'endpoint="other"' in text and 'endpoint="/review/customer/{id}"' in text
    assert 'endpoint="/predict"' in text


def test_huge_numbers_long_digits_and_far_dates_are_4xx(api, anon):
    """Inputs the soak's fuzzer turned into 500s."""
    huge = 10 ** 400
    names = api.get("/model").json()["features"]
    row = dict.fromkeys(names, 0.0) | {"customer_id": "r1", names[0]: huge}
    assert_names(api.post("/predict_features", json={"rows": [row]}), 400, f"rows[0].{names[0]}")
    body = predict_body(customers=[customer(attributes={"seats": huge})])
    resp = api.post("/predict", json=body)
    assert resp.status_code == 400, resp.text[:300]
    reviewer = {"Authorization": "Basic " + base64.b64encode(f"r:{REVIEW_KEY}".encode()).decode()}
    for query in ("/review/customer/x?as_of=9999-12-31",
                  "/review/customer/x?as_of=0001-01-01T00:00:00%2B01:00"):
        resp = anon.get(query, headers=reviewer)
        assert resp.status_code == 400, (query[:60], resp.status_code)
    # without scores the list page says so (200) before it reads the limit; unit-tested too
    assert anon.get("/review/?limit=" + "9" * 5000, headers=reviewer).status_code < 500


def test_a_client_cannot_forge_lines_in_the_access_log(anon, secure):
    anon.get("/no-page%0Aforged-line-marker%00")
    time.sleep(0.5)
    lines = secure.log.read_text(errors="replace").splitlines()
    assert not any(line.startswith("forged-line-marker") for line in lines)
    assert any("forged-line-marker" in line for line in lines)  # logged, escaped
