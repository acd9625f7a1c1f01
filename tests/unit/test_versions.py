"""The scorer answers every item with the model version the public service named."""

from __future__ import annotations

from dataclasses import dataclass

from serving.service import ItemResult, _by_version


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
