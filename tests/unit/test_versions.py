"""The scorer answers every item with the model version the public service named."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import anyio
import pytest

from serving.errors import error_body
from serving.service import VERSION_REFUSED, ChurnService, ItemResult, _by_version, _refused


@dataclass
class Item:
    version: str | None
    n: int


class Holder:
    """Stands in for ModelHolder.at: a model per version, recording what was asked for."""

    def __init__(self):
        self.asked: list[str | None] = []

    def at(self, version):
        self.asked.append(version)
        return f"model-{version or 'current'}"


def test_each_item_is_scored_with_its_version_and_keeps_its_place():
    holder = Holder()
    items = [Item("1", 0), Item("2", 1), Item("1", 2), Item(None, 3)]
    calls = []

    def func(loaded, batch):
        calls.append((loaded, [i.n for i in batch]))
        return [f"{loaded}:{i.n}" for i in batch]

    out = _by_version(holder, items, func)
    assert out == ["model-1:0", "model-2:1", "model-1:2", "model-current:3"]
    assert sorted(calls) == [("model-1", [0, 2]), ("model-2", [1]), ("model-current", [3])]


def test_a_failing_version_group_fails_only_its_items():
    holder = Holder()
    items = [Item("1", 0), Item("2", 1)]

    def func(loaded, batch):
        if loaded == "model-2":
            raise RuntimeError("cannot load")
        return [ItemResult() for _ in batch]

    out = _by_version(holder, items, func)
    assert out[0].error is None
    assert out[1].error["status"] == 500


class Unloadable(Holder):
    """A scorer's holder that cannot load version 9 (deleted, or its registry unreadable)."""

    def at(self, version):
        if version == "9":
            raise OSError("no such version")
        return super().at(version)


def test_a_version_the_scorer_cannot_load_is_refused_not_scored_with_another():
    """Issue 26, point 6: the scorer never answers with a version other than the one named."""
    items = [Item("9", 0), Item("1", 1)]
    out = _by_version(Unloadable(), items, lambda loaded, batch: [f"{loaded}:{i.n}"
                                                                  for i in batch])
    assert out[1] == "model-1:1"
    assert _refused(out[0]) and out[0].error["status"] == 503
    assert _refused(out[0].model_dump())  # as it arrives from the scorer's process


def _public(local_max_inflight: int = 0):
    """A stand-in for the public service's state, for ChurnService._score."""
    public = SimpleNamespace(settings=SimpleNamespace(local_max_inflight=local_max_inflight,
                                                      scorer_timeout_s=5), _local=0)
    public._score_here = lambda local, arg: ChurnService.inner._score_here(public, local, arg)
    return public


@pytest.mark.parametrize("answer", ["refused", "scored"])
def test_the_public_service_scores_a_refused_request_itself(answer):
    local_calls = []

    def local(arg):
        local_calls.append(arg)
        return ["here"]

    async def remote(arg):
        if answer == "refused":
            return [ItemResult(error=error_body("cannot load", VERSION_REFUSED, status=503))
                    .model_dump()]
        return ["there"]

    result = anyio.run(ChurnService.inner._score, _public(), local, remote, ["item"])
    assert result == (["here"] if answer == "refused" else ["there"])
    assert local_calls == ([["item"]] if answer == "refused" else [])
