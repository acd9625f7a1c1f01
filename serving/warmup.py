"""Warm a worker before its first request: the example customers of examples/predict.json go
through every scoring path once (histories, feature rows, an explanation), so lazy imports,
DuckDB's first plans and the explainer's buffers are built at start-up, not during traffic.

The first requests after a start or a restart are then as fast as the rest, and the memory a
worker settles at is reached before it serves (the soak benchmark judges growth from its first
minute). A failure here is logged and never stops the worker: traffic would do the same work."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from serving.holder import ModelHolder
from serving.items import HistoryItem, ItemResult, RowItem, explain_history, score_histories, score_rows
from serving.schemas import CustomerIn

log = logging.getLogger(__name__)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "predict.json"


def warm_up(holder: ModelHolder, top_k: int, bands: tuple[float, float]) -> bool:
    """Score the examples once with the held model; True when every path answered."""
    loaded = holder.current
    try:
        body = json.loads(EXAMPLES.read_text())
        items = [HistoryItem(customer=CustomerIn(**c), as_of=body["as_of"])
                 for c in body["customers"]]
        answered = score_histories(loaded, items, top_k, bands)
        explained = explain_history(loaded, items[0], top_k, bands)
        if isinstance(explained, ItemResult):
            answered.append(explained)
        else:
            values = {f.feature: f.value for f in explained.features}
            row = {"customer_id": items[0].customer.customer_id, "as_of": body["as_of"],
                   **{name: values[name] for name in loaded.model.feature_names}}
            answered += score_rows(loaded, [RowItem.model_validate(
                {"row": row, "as_of": body["as_of"]})], top_k, bands)
        refused = [r.error for r in answered if r.error is not None]
        if refused:
            log.warning("warm-up: the examples were refused: %s", refused[0])
        return not refused
    except Exception as exc:  # noqa: BLE001 - a cold worker still serves
        log.warning("warm-up skipped: %s", str(exc).splitlines()[0] if str(exc) else type(exc))
        return False
