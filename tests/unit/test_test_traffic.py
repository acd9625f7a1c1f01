"""The test-call mark: which headers mark a request, and that the mark reaches the handler."""

from __future__ import annotations

import asyncio

import pytest

from serving.test_traffic import TestTraffic, is_test_call, marked


@pytest.mark.parametrize(("headers", "test"), [
    ([(b"x-churn-test", b"1")], True),
    ([(b"X-Churn-Test", b" true ")], True),
    ([(b"x-churn-test", b"0")], False),
    ([(b"x-churn-test", b"")], False),
    ([(b"x-other", b"1")], False),
    ([], False),
])
def test_the_header_marks_a_test_call(headers, test):
    assert marked(headers) is test


def test_the_mark_reaches_the_handler_and_ends_with_the_request():
    seen = []

    async def handler(scope, receive, send):
        seen.append(is_test_call())

    app = TestTraffic(handler)
    for headers in ([(b"x-churn-test", b"1")], []):
        asyncio.run(app({"type": "http", "headers": headers}, None, None))
    assert seen == [True, False] and is_test_call() is False
