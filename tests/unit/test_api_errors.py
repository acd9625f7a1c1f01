"""The one error shape (serving.errors) and the OpenAPI document (serving.openapi), without a
server: pydantic's errors, BentoML's bodies and Starlette's plain 4xx all become
{"error", "field", "detail"}; the document BentoML writes becomes ours."""

from __future__ import annotations

import copy
import json
from datetime import datetime

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from serving.errors import ISO_HINT, error_body, for_status, from_validation, normalized
from serving.openapi import document

SHAPE = {"error", "field", "detail"}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signup_at: datetime
    seats: int = 0


def pydantic_errors(value: object) -> list[dict]:
    try:
        Body.model_validate_json(value) if isinstance(value, str) else Body.model_validate(value)
    except ValidationError as exc:
        # what BentoML puts in its 400 body
        return exc.errors(include_context=False, include_input=False)
    raise AssertionError("no error")


@pytest.mark.parametrize("text", ["03/10/2025", "2025-13-01", "last tuesday", "10.03.2025"])
def test_a_time_that_is_not_iso_8601_gets_the_hint(text):
    body = from_validation(pydantic_errors({"signup_at": text}))
    assert set(body) == SHAPE
    assert body["field"] == "signup_at"
    assert ISO_HINT in body["error"] and "2026-06-30T09:00:00Z" in body["error"]
    assert "Input should be" not in body["error"]


def test_every_problem_is_in_detail_and_the_first_names_the_field():
    body = from_validation(pydantic_errors({"signup_at": "x", "seats": "many", "vip": True}))
    assert body["field"] == "signup_at"
    assert len(body["detail"].split("; ")) == 3
    assert "seats:" in body["detail"] and "vip: is not a field of this request" in body["detail"]


@pytest.mark.parametrize("raw,words", [("{", "is not valid JSON"), ("[]", "must be a JSON object")])
def test_a_body_that_is_no_object_names_the_body(raw, words):
    body = from_validation(pydantic_errors(raw))
    assert body["field"] == "body" and words in body["error"]


def test_bentoml_bodies_lose_internal_names_and_take_the_shape():
    raw = {"error": "1 validation error for PredictRequestIODescriptor", "detail": [
        {"type": "missing", "loc": ["customers"], "msg": "Field required"}]}
    body = normalized(raw, 400)
    assert body == error_body("is required", "customers")
    listed = normalized([{"error": "bad thing for ExplainRequestIODescriptor"}], 400)
    assert set(listed) == SHAPE and "IODescriptor" not in json.dumps(listed)
    ours = normalized({"error": "no such task", "field": "task_id", "task_id": "x"}, 404)
    assert ours == {**error_body("no such task", "task_id"), "task_id": "x"}


def test_plain_4xx_become_the_shape():
    assert for_status(404)["field"] == "path"
    gone = for_status(405, "POST")
    assert gone["field"] == "method" and "POST" in gone["error"]
    assert set(for_status(418)) == SHAPE


# a small document in the form BentoML 1.4 writes it
BENTO = {
    "openapi": "3.0.2",
    "info": {"title": "churn", "version": "None", "description": "[![badge](https://img.shields.io/x)]",
             "contact": {"name": "BentoML Team"}},
    "paths": {
        "/predict": {"post": {
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "title": "PredictRequestIODescriptor", "root_input": True,
                "properties": {"customers": {"type": "array",
                                             "items": {"$ref": "#/components/schemas/CustomerIn"}}}}}}},
            "responses": {
                "200": {"description": "ok", "content": {"application/json": {"schema": {
                    "type": "object", "title": "PredictResponseIODescriptor"}}}},
                "400": {"description": "Bad Request", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/InvalidArgument"}}}},
                "404": {"description": "Not Found", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/NotFound"}}}}},
            "tags": ["Service APIs"], "x-bentoml-name": "predict",
            "description": "Churn probability. More."}},
        "/healthz": {"get": {"responses": {"200": {"description": "ok"}},
                             "tags": ["Infrastructure"]}},
    },
    "components": {"schemas": {
        "CustomerIn": {"type": "object", "properties": {"customer_id": {"type": "string"}}},
        "PredictRequestIODescriptor": {"type": "object", "title": "PredictRequestIODescriptor"},
        "InvalidArgument": {"type": "object"}, "NotFound": {"type": "object"},
        "TaskStatusResponse": {"type": "object"}}},
}


def test_the_document_is_ours():
    example = {"customers": [{"customer_id": "acme-42"}]}
    spec = document(BENTO, {"/predict": example}, version="1.2.3")
    text = json.dumps(spec)
    assert spec["info"]["title"] == "churn-service API" and spec["info"]["version"] == "1.2.3"
    assert "IODescriptor" not in text and "http" not in text and "BentoML" not in text
    assert "root_input" not in text and "TaskStatusResponse" not in text
    op = spec["paths"]["/predict"]["post"]
    assert op["requestBody"]["content"]["application/json"]["example"] == example
    assert op["requestBody"]["content"]["application/json"]["schema"]["title"] == "PredictRequest"
    assert "404" not in op["responses"]  # a POST to an existing route is never a 404
    for status, response in op["responses"].items():
        if status != "200":
            media = response["content"]["application/json"]
            assert media["schema"] == {"$ref": "#/components/schemas/Error"}
            assert set(media["example"]) >= SHAPE
    assert spec["components"]["schemas"]["Error"]["required"] == ["error", "field", "detail"]
    for path in ("/model", "/batch/submit", "/batch/status", "/batch/get"):
        assert path in spec["paths"]
    status = spec["components"]["schemas"]["BatchJob"]["properties"]["status"]
    assert status["enum"] == ["pending", "in_progress", "completed", "failed"]
    parquet = spec["paths"]["/batch/get"]["get"]["responses"]["200"]["content"]
    assert "application/vnd.apache.parquet" in parquet
    assert BENTO["info"]["title"] == "churn"  # the input is not changed


def _served_spec():
    from features.contract import AttributeKinds
    from features.definitions import FeatureSpec

    return FeatureSpec(("login", "payment"), value_columns=("amount",),
                       attributes=AttributeKinds(numeric=("seats",), categorical=("plan",)))


def test_the_document_states_the_served_models_contract():
    """Issue 26, point 7: request bodies are required, a feature row lists every feature of the
    served model with its type and bound, and value_column is one of the model's columns."""
    model = _served_spec()
    columns = sorted({*model.feature_names, "attr_seats"})
    bento = copy.deepcopy(BENTO)
    bento["components"]["schemas"]["FeatureRow"] = {
        "type": "object", "properties": {"customer_id": {"type": "string"},
                                         "as_of": {"type": "string"}}}
    spec = document(bento, {}, version="1", model=model, value_columns=columns)
    assert spec["paths"]["/predict"]["post"]["requestBody"]["required"] is True
    row = spec["components"]["schemas"]["FeatureRow"]
    assert row["required"] == ["customer_id", *model.feature_names]
    assert row["additionalProperties"] is False
    text, number = row["properties"]["customer_id"]["anyOf"]
    assert number == {"type": "integer"} and text["pattern"] == "^[^\u0000-\u001f\u007f]*$"
    lower = {f.name: f.lower for f in model.entries if f.lower is not None}
    assert lower, "the spec has bounded features"
    for name in model.feature_names:
        prop = row["properties"][name]
        assert prop["nullable"] is True
        if name in model.categorical_features:
            assert prop["anyOf"] == [{"type": "string"}, {"type": "number"}]
        else:
            assert prop["type"] == "number" and prop.get("minimum") == lower.get(name)
    form = spec["paths"]["/batch/submit"]["post"]["requestBody"]["content"][
        "multipart/form-data"]["schema"]
    assert form["properties"]["value_column"]["enum"] == columns
    assert form["additionalProperties"] is False
    # without a served model the document still stands, with no feature list
    assert "FeatureRow" not in document(BENTO, {})["components"]["schemas"]


def _predict_errors(event: dict) -> list[dict]:
    from serving.schemas import PredictRequest

    body = {"customers": [{"customer_id": 1, "signup_at": "2025-01-01T00:00:00Z",
                           "events": [{"timestamp": "2026-01-01T00:00:00Z",
                                       "event_type": "login", **event}]}]}
    try:
        PredictRequest.model_validate(body)
    except ValidationError as exc:
        return exc.errors(include_context=False, include_input=False)
    raise AssertionError("no error")


@pytest.mark.parametrize("event,field,words", [
    ({"channel": "web"}, "customers[0].events[0].channel",
     ['is not a field of an event', '{"values": {"channel": 2}}',
      '{"contacts": {"channel": "..."}}']),
    ({"values": {"store": "Munich"}}, "customers[0].events[0].values.store",
     ['must be a number: a text column goes under contacts', '{"contacts": {"store": ...}}']),
])
def test_an_events_file_column_sent_as_a_field_is_told_where_it_goes(event, field, words):
    """A column `churn score` reads from an events file (a number, or a text read as a point of
    contact) has a place in /predict's event; the refusal names it."""
    body = from_validation(_predict_errors(event))
    assert body["field"] == field
    for w in words:
        assert w in body["error"], body
