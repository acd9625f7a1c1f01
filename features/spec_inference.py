"""The feature spec a dataset gets: its most frequent event types, its value and contact
columns, the attributes that may be used, the activity types it names (`infer_spec`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd

from features.contract import EVENT_TYPE, SIGNUP_AT, TIMESTAMP, AttributeKinds, Tables
from features.definitions import FeatureSpec
from features.relations import epoch_seconds

log = logging.getLogger(__name__)

# a date attribute later than signup for more than this share of customers changes after signup
CHANGING_DATE_SHARE = 0.05


def changing_date_attributes(tables: Tables) -> tuple[str, ...]:
    """Date attributes that change after signup (a last-order date, a cancellation request, a
    contract end rewritten at churn): later than the customer's signup day for more than 5% of
    the customers that have one.

    Static attributes are known only as of the export, and applied to every past observation
    time. A date that changes after signup would then tell the model about the future: its
    value, or even that it is missing because it lies after the observation time. Such columns
    are left out. Dates fixed at signup (a date of birth, an acquisition date) stay."""
    customers = tables.customers
    changing = []
    for a in tables.attributes.datetime:
        known = customers[a].notna()
        later = customers[a] > customers[SIGNUP_AT].dt.floor("D") + pd.Timedelta(days=1)
        if known.any() and (later & known).sum() > CHANGING_DATE_SHARE * known.sum():
            changing.append(a)
    return tuple(changing)


def infer_spec(tables: Tables, before: pd.Timestamp | None = None, max_event_types: int = 30,
               activity_types: Sequence[str] = (), **kwargs) -> FeatureSpec:
    """The feature spec for a dataset: its most frequent event types, value columns, attributes.

    Only events strictly before `before` are counted, so the columns of a feature table are a
    function of the past alone: training passes its last training time, `churn features` its
    latest observation time. Rarer and later types still count in the totals. Date attributes
    that change after signup are left out (`changing_date_attributes`). `activity_types` are
    the event types that count as activity (`check_activity_types`; empty: every event)."""
    activity = check_activity_types(tables, activity_types)
    changing = changing_date_attributes(tables)
    if changing:
        log.warning("left out date attributes that change after signup (their export value would "
                    "leak the future into past observations): %s", ", ".join(changing))
    kinds = tables.attributes
    attributes = AttributeKinds(kinds.numeric, kinds.categorical,
                                tuple(a for a in kinds.datetime if a not in changing))
    events = tables.events
    if isinstance(events, pd.DataFrame):
        if before is not None:
            events = events[events[TIMESTAMP] < pd.Timestamp(before)]
        counts = events[EVENT_TYPE].value_counts()
        first = float(epoch_seconds(events[TIMESTAMP]).min()) if len(events) else None
    else:  # scanned by an engine (features.sources)
        counts, first, _ = events.stats(
            None if before is None else float(epoch_seconds(pd.Series([pd.Timestamp(before)]))[0]))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_event_types]
    kwargs.setdefault("log_start", first)
    return FeatureSpec(
        event_types=tuple(sorted(t for t, _ in ranked)),
        value_columns=tables.value_columns,
        contact_columns=tables.contact_columns,
        attributes=attributes,
        activity_types=activity,
        **kwargs,
    )


def check_activity_types(tables: Tables, activity_types: Sequence[str]) -> tuple[str, ...]:
    """The activity types, sorted and without repeats, each of which must occur in the events
    file (a ValueError naming `--activity` and the first that does not). Empty: every event."""
    wanted = tuple(sorted({str(t).strip() for t in activity_types}))
    if not wanted:
        return ()
    if "" in wanted:
        raise ValueError("--activity: an event type must not be empty")
    events = tables.events
    present = (set(events[EVENT_TYPE].astype(str).unique()) if isinstance(events, pd.DataFrame)
               else set(events.stats()[0].index))  # scanned: counts of the whole file, cached
    unknown = [t for t in wanted if t not in present]
    if unknown:
        shown = ", ".join(sorted(present)[:10]) + (", ..." if len(present) > 10 else "")
        raise ValueError(f"--activity: event type {unknown[0]!r} is not in the events file "
                         f"(its types: {shown})")
    return wanted



def _listed(names: Sequence[str], as_what: str) -> str | None:
    return f"{', '.join(names)} as {as_what}" if names else None


def describe_columns(tables: Tables, spec: FeatureSpec) -> str:
    """One line saying how the columns of `tables` are used by `spec` (the one a run infers,
    or a model's when scoring): each as a number, a category, a date or a point of contact,
    and which are left out and why. Columns the loader ignored are in `tables.notes`."""
    attrs = spec.attributes
    events = [_listed(spec.value_columns, "numbers"),
              _listed(spec.contact_columns, "points of contact")]
    customers = [_listed(attrs.numeric, "numbers"), _listed(attrs.categorical, "categories"),
                 _listed(attrs.datetime, "dates (days before the observation time)")]
    used = [f"{what}: {'; '.join(p for p in parts if p)}"
            for what, parts in (("events", events), ("customers", customers)) if any(parts)]
    changing = set(changing_date_attributes(tables))
    known = {*spec.value_columns, *spec.contact_columns, *attrs.all}
    have = (*tables.value_columns, *tables.contact_columns, *tables.attributes.all)
    left = [f"{c} (a date that changes after signup: its export value would leak the future)"
            if c in changing else f"{c} (the model was trained without it)"
            for c in have if c not in known]
    missing = [c for c in (*spec.value_columns, *spec.contact_columns, *attrs.all)
               if c not in have]
    text = "columns used: " + ("; ".join(used) or "none besides the required ones")
    if left:
        text += "; left out: " + ", ".join(left)
    if missing:
        text += "; not in these files, read as missing: " + ", ".join(missing)
    return text
