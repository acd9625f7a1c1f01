"""The OpenAPI document of the service, as a client needs it.

BentoML generates a document from the endpoints' pydantic models. `document` turns it into
ours: a real title and the package version, no third-party links, request examples (from
examples/predict.json, not "string"), the error shape every error really has
(serving.errors), every status an operation can answer, the routes BentoML does not know
(GET /model, /batch/*), and the schema names of our models instead of BentoML's internal ones.
A pure function of its inputs, so it is tested without a server.
"""

from __future__ import annotations

import copy
import re
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from features.definitions import FeatureSpec
from serving.batch import OPTIONS, PARQUET, STATUSES
from serving.errors import ISO_HINT, error_body
from serving.schemas import ModelInfo

TITLE = "churn-service API"
JSON_PATHS = ("/predict", "/predict_features", "/explain")
ERROR = {"$ref": "#/components/schemas/Error"}

DESCRIPTION = f"""Churn probability, risk band and reasons for customers, from their raw
interaction history (`/predict`, `/explain`) or from precomputed feature rows
(`/predict_features`); batch scoring of whole files (`/batch/*`); the served model (`/model`).

**Errors.** Every error answer is JSON in one shape: `error` (one sentence, naming the field),
`field` (where the problem is, e.g. `customers[0].events[3].timestamp`, `Content-Type` or
`body`; empty when it is no single field's) and `detail` (every problem found, with a hint
where one helps). A customer's or row's error adds `index`, its place in the request; a batch
answer adds `task_id`. Times are ISO 8601 text, e.g. 2026-06-30 or 2026-06-30T09:00:00Z.

**Keys.** When the service runs with `CHURN_API_KEYS`, every endpoint here except the health
checks wants `Authorization: Bearer <key>` or `X-API-Key: <key>` (401 otherwise).

**Batch job status.** {"; ".join(f"`{k}`: {v}" for k, v in STATUSES.items())}.
"""

ERROR_SCHEMA = {
    "type": "object", "title": "Error", "required": ["error", "field", "detail"],
    "description": "The one shape of every error answer.",
    "properties": {
        "error": {"type": "string", "description": "One sentence, naming the field."},
        "field": {"type": "string", "description": "Where the problem is, e.g. "
                  "customers[0].events[3].timestamp; empty when it is no single field's."},
        "detail": {"type": "string", "description": "Every problem found, with a hint where "
                   "one helps."},
        "index": {"type": "integer", "description": "The customer's or row's place in the "
                  "request."},
        "task_id": {"type": "string", "description": "The batch job the answer is about."},
    },
}

# status -> (when, an example body) for the JSON endpoints
JSON_ERRORS: dict[str, tuple[str, dict]] = {
    "400": ("Bad input: malformed JSON, a missing, extra or mistyped field, a time that is not "
            "ISO 8601, an event at or after as_of, a missing feature. The body names the field.",
            error_body(f"is not an ISO 8601 date or time (invalid character in year): {ISO_HINT}",
                       "customers[0].signup_at")),
    "401": ("No valid API key (when CHURN_API_KEYS is set).",
            error_body("send an API key as 'Authorization: Bearer <key>' or 'X-API-Key'",
                       "Authorization")),
    "403": ("A browser page of another origin (add it to CHURN_ALLOWED_ORIGINS).",
            error_body("requests from the page at <origin> are not allowed; add it "
                       "to CHURN_ALLOWED_ORIGINS", "Origin")),
    "413": ("The body, or the customers or events in it, past the configured limit.",
            error_body("5001 events in one request; the limit is 5000", "customers[].events")),
    "415": ("A body that is not application/json.",
            error_body("send the body as application/json, not text/plain", "Content-Type")),
    "500": ("A failure of the service (never bad input); the server log has the details.",
            error_body("could not score this input")),
}


def _version() -> str:
    try:
        return package_version("churn-service")
    except PackageNotFoundError:
        return "unknown"


def _response(description: str, example: dict | None = None) -> dict:
    media: dict[str, Any] = {"schema": ERROR}
    if example is not None:
        media["example"] = example
    return {"description": description, "content": {"application/json": media}}


def _errors(*statuses: str, **special: tuple[str, dict]) -> dict[str, dict]:
    out = {s: _response(*JSON_ERRORS[s]) for s in statuses}
    out.update({s: _response(*v) for s, v in special.items()})
    return out


def openapi30(schema: Any) -> Any:
    """A pydantic JSON schema in OpenAPI 3.0: `X | None` as `nullable`."""
    if isinstance(schema, list):
        return [openapi30(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: openapi30(v) for k, v in schema.items()}
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del out["anyOf"]
        out.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        out["nullable"] = True
    return out


def _job_schema() -> dict:
    props: dict[str, dict] = {
        "task_id": {"type": "string", "description": "Pass it to /batch/status and /batch/get."},
        "status": {"type": "string", "enum": list(STATUSES), "description": "; ".join(
            f"{k}: {v}" for k, v in STATUSES.items())},
        "created_at": {"type": "string", "format": "date-time"},
        "model": {"type": "string", "description": "The model version the job scores with: "
                  "the one served when it was submitted."},
    }
    for name, option in OPTIONS.items():
        kind = {str: "string", float: "number", int: "integer"}[option.kind]
        props[name] = {"type": kind, "nullable": True, "description": option.help}
    props.update(
        executed_at={"type": "string", "format": "date-time", "nullable": True},
        completed_at={"type": "string", "format": "date-time", "nullable": True},
        error={"type": "string", "description": "Why the job failed (only when it did)."},
        warnings={"type": "array", "items": {"type": "string"}, "description": "What `churn "
                  "score` notes about the files, once the job completed (only when there is "
                  "something): columns ignored, and how the model uses the others."})
    return {"type": "object", "title": "BatchJob", "properties": props,
            "required": ["task_id", "status", "created_at", "model"]}


def _submit_form(value_columns: list[str] | None = None) -> dict:
    """The /batch/submit form; `value_columns`, the served model's (its features and numeric
    attributes), enumerate what value_column accepts."""
    props: dict[str, dict] = {
        name: {"type": "string", "format": "binary", "description": f"The {name} file: CSV, "
               "gzipped CSV or Parquet (told apart by their bytes; TSV by a .tsv name)."}
        for name in ("customers", "events")}
    for name, option in OPTIONS.items():
        prop: dict[str, Any] = {"type": {str: "string", float: "number", int: "integer"}[
            option.kind], "description": option.help}
        if option.low is not None:
            prop["minimum"] = option.low
            if option.low_open:
                prop["exclusiveMinimum"] = True
        if option.high is not None:
            prop["maximum"] = option.high
        props[name] = prop
    if value_columns is not None:
        props["value_column"]["enum"] = sorted(value_columns)
    return {"type": "object", "required": ["customers", "events"], "properties": props,
            "additionalProperties": False}


def feature_row_schema(spec: FeatureSpec, base: dict | None = None) -> dict:
    """A /predict_features row under the served model: customer_id, an optional as_of, and
    every feature the model needs, each required (null when unknown) with its type and lower
    bound; nothing else (conversion._check_row refuses missing and unknown features alike).
    `base`: the row schema BentoML wrote, whose customer_id and as_of are kept."""
    cats = set(spec.categorical_features)
    lower = {f.name: f.lower for f in spec.entries if f.lower is not None}
    props = dict((base or {}).get("properties", {}))
    props.setdefault("customer_id", {"anyOf": [{"type": "string"}, {"type": "integer"}]})
    props.setdefault("as_of", {"type": "string", "nullable": True})
    for name in spec.feature_names:
        if name in cats:
            prop: dict[str, Any] = {
                "anyOf": [{"type": "string"}, {"type": "number"}], "nullable": True,
                "description": "A category, as text or a number read as its text (an unseen "
                               "one counts as missing), or null."}
        else:
            prop = {"type": "number", "nullable": True, "description": "A finite number, or "
                    "null when unknown."}
            if name in lower:
                prop["minimum"] = lower[name]
        props[name] = prop
    return {"type": "object", "title": "FeatureRow",
            "description": "customer_id, an optional as_of, and every feature of the served "
                           f"model (feature version {spec.version}); null for one not known.",
            "required": ["customer_id", *spec.feature_names], "properties": props,
            "additionalProperties": False}


TASK_ID = {"name": "task_id", "in": "query", "required": True, "description":
           "The task_id /batch/submit answered.",
           "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}


def _own_paths(value_columns: list[str] | None = None) -> dict[str, dict]:
    """The routes BentoML does not document: they are Starlette routes of ours."""
    missing_task = error_body("is required", "task_id")
    no_task = error_body("no such task", "task_id")
    return {
        "/model": {"get": {
            "tags": ["Model"], "operationId": "model",
            "summary": "The served model",
            "description": "Name, version, aliases, training run, test metrics, feature list "
                           "(what /predict_features wants), and the last poll of the alias.",
            "responses": {"200": {"description": "The model every request is scored with.",
                                  "content": {"application/json": {"schema": {
                                      "$ref": "#/components/schemas/ModelInfo"}}}},
                          **_errors("401")}}},
        "/batch/submit": {"post": {
            "tags": ["Batch"], "operationId": "batch_submit",
            "summary": "Start a batch job",
            "description": "Upload a customers and an events file; the job runs `churn score` "
                           "with the form's targeting options and the model served now. Poll "
                           "/batch/status, then fetch /batch/get.",
            "requestBody": {"required": True, "content": {"multipart/form-data": {
                "schema": _submit_form(value_columns),
                "encoding": {"customers": {"contentType": "application/octet-stream"},
                             "events": {"contentType": "application/octet-stream"}}}}},
            "responses": {
                "200": {"description": "Accepted; the job is pending.", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/BatchJob"}}}},
                **_errors("401", "403", **{
                    "400": ("A missing or empty file, an unknown field, an option out of range "
                            "or an as_of that is not ISO 8601.",
                            error_body("must be at most 1", "save_rate")),
                    "413": ("The upload past CHURN_BATCH_MAX_UPLOAD_BYTES.",
                            error_body("the upload is larger than the limit of 1073741824 "
                                       "bytes (CHURN_BATCH_MAX_UPLOAD_BYTES)", "body")),
                    "415": ("A body that is not multipart/form-data.",
                            error_body("send the body as multipart/form-data, not "
                                       "application/json", "Content-Type")),
                    "429": ("CHURN_BATCH_MAX_PENDING jobs already wait or run.",
                            error_body("4 batch jobs are already waiting or running; try again "
                                       "when one has finished")),
                })}}},
        "/batch/status": {"get": {
            "tags": ["Batch"], "operationId": "batch_status",
            "summary": "A batch job's status", "parameters": [TASK_ID],
            "responses": {
                "200": {"description": "The job.", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/BatchJob"}}}},
                **_errors("401", **{
                    "400": ("No task_id.", missing_task),
                    "404": ("No such task (or it is past CHURN_BATCH_RETENTION_S).", no_task)})}}},
        "/batch/get": {"get": {
            "tags": ["Batch"], "operationId": "batch_get",
            "summary": "A completed job's scores (Parquet)", "parameters": [TASK_ID],
            "description": "The Parquet `churn score` writes, as scores-<task_id>.parquet.",
            "responses": {
                "200": {"description": "The scores, one row per customer active at as_of.",
                        "headers": {"Content-Disposition": {
                            "description": 'attachment; filename="scores-<task_id>.parquet"',
                            "schema": {"type": "string"}}},
                        "content": {PARQUET: {"schema": {"type": "string",
                                                         "format": "binary"}}}},
                **_errors("401", **{
                    "400": ("No task_id.", missing_task),
                    "404": ("No such task (or it is past CHURN_BATCH_RETENTION_S).", no_task),
                    "409": ("The job is pending or in progress.",
                            error_body("the job is in progress; poll /batch/status until it is "
                                       "completed", "task_id", task_id="<task_id>")),
                    "422": ("The job failed on bad input; `error` is its one-line reason.",
                            error_body("the customers file: missing column signup_at",
                                       task_id="<task_id>")),
                    "500": ("The job failed for a reason of the service's own.",
                            error_body("churn score exited 1", task_id="<task_id>")),
                })}}},
    }


IO_NAME = re.compile(r"(\w+)IODescriptor$")


def _rename(node: Any, names: dict[str, str]) -> Any:
    """BentoML's schema names (PredictRequestIODescriptor) as ours (PredictRequest)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                name = value.rsplit("/", 1)[-1]
                out[key] = value[: -len(name)] + names.get(name, name)
            elif key == "title" and isinstance(value, str):
                out[key] = names.get(value, value)
            else:
                out[key] = _rename(value, names)
        return out
    if isinstance(node, list):
        return [_rename(v, names) for v in node]
    return node


def _id_either(operation: dict) -> None:
    """BentoML flattens the `anyOf` of a top-level request property to its first type; an id
    may be a string or an integer (schemas.CustomerId)."""
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    prop = body.get("schema", {}).get("properties", {}).get("customer_id")
    if prop is not None:
        prop.pop("type", None)
        prop["anyOf"] = [{"type": "string"}, {"type": "integer"}]


# an id is stored, logged and shown: no control characters (schemas.has_control)
ID_PATTERN = "^[^\u0000-\u001f\u007f]*$"


def _bound_ids(node: Any, max_id_chars: int | None) -> None:
    """Every customer_id as the service reads it: text without control characters, at most
    `max_id_chars` long, or an integer (schemas.CustomerId, check_strings)."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict) and isinstance(props.get("customer_id"), dict):
            text: dict[str, Any] = {"type": "string", "pattern": ID_PATTERN}
            if max_id_chars is not None:
                text["maxLength"] = max_id_chars
            old = props["customer_id"]
            props["customer_id"] = {"anyOf": [text, {"type": "integer"}],
                                    **({"description": old["description"]}
                                       if "description" in old else {})}
        for value in node.values():
            _bound_ids(value, max_id_chars)
    elif isinstance(node, list):
        for value in node:
            _bound_ids(value, max_id_chars)


def _mark_nullable(node: Any) -> None:
    """BentoML writes pydantic's `X | None` as plain X in OpenAPI 3.0; a property whose default
    is null accepts null, so say so (`nullable`)."""
    if isinstance(node, dict):
        if "default" in node and node["default"] is None and "type" in node:
            node["nullable"] = True
        for value in node.values():
            _mark_nullable(value)
    elif isinstance(node, list):
        for value in node:
            _mark_nullable(value)


def document(spec: dict, examples: dict[str, Any], version: str | None = None,
             model: FeatureSpec | None = None, value_columns: list[str] | None = None,
             limits: dict[str, int] | None = None) -> dict:
    """Our OpenAPI document from BentoML's. `examples`: request bodies by path ("/predict",
    "/explain", "/predict_features"), each used as that operation's example. `model`: the
    served model's feature spec, whose features a /predict_features row lists;
    `value_columns`: what /batch/submit's value_column may name; `limits`: the service's
    max_id_chars. (Sizes, such as the customers of one request, are 413s, not schema: a
    request past them is well-formed, only too large.)"""
    limits = limits or {}
    spec = copy.deepcopy(spec)
    spec["info"] = {"title": TITLE, "version": version or _version(), "description": DESCRIPTION}
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    names = {n: m.group(1) for n in schemas if (m := IO_NAME.fullmatch(n))}
    for path in JSON_PATHS:  # request and response schemas BentoML writes inline
        for operation in spec.get("paths", {}).get(path, {}).values():
            for holder in (operation.get("requestBody", {}),
                           operation.get("responses", {}).get("200", {})):
                title = holder.get("content", {}).get("application/json", {}).get(
                    "schema", {}).get("title", "")
                if m := IO_NAME.fullmatch(title):
                    names[title] = m.group(1)
    spec = _rename(spec, names)
    schemas = {names.get(k, k): v for k, v in spec["components"]["schemas"].items()
               if k not in ("InvalidArgument", "NotFound", "InternalServerError",
                            "TaskStatusResponse", "RequestRefused")}
    schemas["Error"] = ERROR_SCHEMA
    schemas["ModelInfo"] = openapi30(ModelInfo.model_json_schema())
    schemas["BatchJob"] = _job_schema()
    if model is not None:
        schemas["FeatureRow"] = feature_row_schema(model, schemas.get("FeatureRow"))
    spec["components"]["schemas"] = schemas
    _mark_nullable(spec)
    _bound_ids(spec, limits.get("max_id_chars"))

    spec["tags"] = [{"name": "Scoring", "description": "Real-time predictions and explanations."},
                    {"name": "Model", "description": "The served model."},
                    {"name": "Batch", "description": "Scoring whole files as jobs."},
                    {"name": "Health", "description": "Liveness, readiness and metrics."}]
    paths = spec.setdefault("paths", {})
    for path, item in paths.items():
        for operation in item.values():
            operation["tags"] = ["Scoring" if path in JSON_PATHS else "Health"]
            if path not in JSON_PATHS:
                continue
            _id_either(operation)
            operation.pop("x-bentoml-name", None)
            operation["summary"] = (operation.get("description") or "").split(".")[0]
            operation["responses"] = {"200": operation["responses"]["200"],
                                      **_errors(*JSON_ERRORS)}
            example = examples.get(path)
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if example is not None and body is not None:
                body.pop("root_input", None)
                body["example"] = example
            body_schema = (body or {}).get("schema", {})
            body_schema.pop("root_input", None)
            if "requestBody" in operation:  # an empty POST is refused (415): say it is needed
                operation["requestBody"]["required"] = True
    paths.update(_own_paths(value_columns))
    return spec
