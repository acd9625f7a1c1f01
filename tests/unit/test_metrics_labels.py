"""Every route the reviewer page serves is its own label in /metrics, not "other"."""

from __future__ import annotations

from serving.metrics import endpoint_label
from serving.review.routes import review_app


def test_every_review_route_has_its_own_metrics_label():
    for route in review_app.routes:
        path = "/review" + route.path.replace("{customer_id:path}", "42")
        assert endpoint_label(path) != "other", path
    assert endpoint_label("/review/customer/42") == "/review/customer/{id}"
    assert endpoint_label("/wp-login.php") == "other"
