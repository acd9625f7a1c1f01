"""A worker scores the example customers through every path before its first request."""

from __future__ import annotations

import json

from serving import warmup
from serving.holder import ModelHolder


def _holder(trained) -> ModelHolder:
    return ModelHolder(f"models:/churn/{trained.result['model_version']}")


def test_warm_up_answers_every_scoring_path(trained):
    """The example histories, the explanation and a feature row built from it are all scored
    without an error: the worker met every path before its first request."""
    assert warmup.warm_up(_holder(trained), 3, (0.2, 0.5)) is True


def test_a_failed_warm_up_never_stops_the_worker(trained, tmp_path, monkeypatch):
    """Examples the model cannot read (a broken file) leave a cold worker, not a dead one."""
    broken = tmp_path / "predict.json"
    broken.write_text(json.dumps({"as_of": "not a time", "customers": [{"x": 1}]}))
    monkeypatch.setattr(warmup, "EXAMPLES", broken)
    assert warmup.warm_up(_holder(trained), 3, (0.2, 0.5)) is False
