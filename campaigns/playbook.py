"""The retention playbook: reason families, their actions, the timeline's warning signs, the
reasons a customer can state for leaving (the taxonomy campaign outcomes are recorded in) and
the win-back follow-up for customers who come back.

The playbook is a small TOML file (campaigns/playbook.toml) that people edit; `load_playbook`
validates it with pydantic and names the key of any mistake. Matching is pure: feature names or
event types in, a family or a warning sign out.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_PATH = Path(__file__).with_name("playbook.toml")
DEFAULT_FAMILY = "default"


class _PlaybookModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _clean_patterns(patterns: Sequence[str]) -> tuple[str, ...]:
    out = tuple(p.strip().lower() for p in patterns)
    if any(not p for p in out):
        raise ValueError("patterns must not be empty strings")
    return out


def first_sentence(text: str) -> str:
    """The first sentence of an action, without its full stop: the step to take."""
    head = re.split(r"(?<=[.!?])\s", " ".join(text.split()), maxsplit=1)[0]
    return head.rstrip(".")


class Milder(_PlaybookModel):
    """The action of a family while its evidence is thin (`Evidence`)."""

    title: Annotated[str, Field(min_length=1)]
    do: str = ""
    action: Annotated[str, Field(min_length=1)]


class Evidence(_PlaybookModel):
    """How much a family needs before its action applies: at least `at_least` events of the
    timeline sign `sign` in the `days` before the scores' date. With fewer, `fewer` applies
    (one support ticket is not a pile of complaints)."""

    sign: Annotated[str, Field(min_length=1)]
    at_least: Annotated[int, Field(ge=2, le=1000)] = 2
    days: Annotated[int, Field(gt=0, le=3650)] = 30
    fewer: Milder


class Family(_PlaybookModel):
    """A reason family: the retention action for customers whose top reasons match it. `title`
    names the situation, `do` the step to take (default: the action's first sentence)."""

    title: Annotated[str, Field(min_length=1)]
    action: Annotated[str, Field(min_length=1)]
    patterns: tuple[str, ...]
    do: str = ""
    evidence: Evidence | None = None

    @field_validator("patterns")
    @classmethod
    def _clean(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        return _clean_patterns(patterns)

    @property
    def step(self) -> str:
        """What to do, in a few words: the list's "suggested action"."""
        return self.do.strip() or first_sentence(self.action)


class Sign(_PlaybookModel):
    """A warning sign on the timeline: the event types that show it."""

    label: Annotated[str, Field(min_length=1)]
    patterns: Annotated[tuple[str, ...], Field(min_length=1)]

    @field_validator("patterns")
    @classmethod
    def _clean(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        return _clean_patterns(patterns)


class Timeline(_PlaybookModel):
    days: Annotated[int, Field(gt=0, le=3650)] = 120
    thinning_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.5
    signs: dict[str, Sign] = Field(default_factory=dict)


class Reason(_PlaybookModel):
    """A reason a customer gives for leaving; `free_text` reasons need the customer's words."""

    label: Annotated[str, Field(min_length=1, max_length=100)]
    free_text: bool = False


OTHER_REASON = "other"
REASON_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

DEFAULT_REASONS = {
    "price": Reason(label="Price"),
    "service_quality": Reason(label="Service quality"),
    "competitor": Reason(label="Went to a competitor"),
    "no_longer_needed": Reason(label="No longer needed"),
    "payment_problems": Reason(label="Payment problems"),
    "moved": Reason(label="Moved"),
    OTHER_REASON: Reason(label="Other", free_text=True),
}


class Action(_PlaybookModel):
    title: Annotated[str, Field(min_length=1)]
    action: Annotated[str, Field(min_length=1)]


DEFAULT_WINBACK = Action(
    title="They came back",
    action="Welcome them back within a week. Ask what brought them back and what made them "
           "leave, and fix that first.")


class Playbook(_PlaybookModel):
    families: dict[str, Family]
    timeline: Timeline = Field(default_factory=Timeline)
    reasons: dict[str, Reason] = Field(default_factory=lambda: dict(DEFAULT_REASONS))
    winback: Action = DEFAULT_WINBACK

    @field_validator("reasons")
    @classmethod
    def _reason_keys(cls, reasons: dict[str, Reason]) -> dict[str, Reason]:
        for key in reasons:
            if not REASON_KEY.match(key):
                raise ValueError(f"{key!r}: a reason key is lower-case letters, digits and _ "
                                 "(at most 40)")
        other = reasons.get(OTHER_REASON)
        if other is None or not other.free_text:
            raise ValueError(f"give an {OTHER_REASON!r} reason with free_text = true")
        return reasons

    @model_validator(mode="after")
    def _has_default(self) -> Playbook:
        if DEFAULT_FAMILY not in self.families:
            raise ValueError(f"families.{DEFAULT_FAMILY} is missing: it applies when no other "
                             "family matches")
        for name, family in self.families.items():
            if name != DEFAULT_FAMILY and not family.patterns:
                raise ValueError(f"families.{name}.patterns: give at least one pattern")
            if family.evidence and family.evidence.sign not in self.timeline.signs:
                raise ValueError(f"families.{name}.evidence.sign: {family.evidence.sign!r} is not "
                                 f"a timeline sign ({', '.join(self.timeline.signs) or 'none'})")
        return self


class PlaybookError(ValueError):
    """The playbook file is unreadable or breaks the schema; the message names the key."""


def _where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_playbook(data: dict, source: str = "playbook") -> Playbook:
    """Validate parsed TOML; every problem is one line `source: key: problem`."""
    try:
        return Playbook.model_validate(data)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {_where(e['loc'])}: {msg}" if e["loc"] else f"{source}: {msg}")
        raise PlaybookError("; ".join(lines)) from None


def load_playbook(path: str | Path = DEFAULT_PATH) -> Playbook:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlaybookError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise PlaybookError(f"{path}: not valid TOML: {exc}") from None
    return parse_playbook(data, str(path))


# -- matching --------------------------------------------------------------------------------


def matches(name: str, patterns: Sequence[str]) -> bool:
    low = name.lower()
    return any(fnmatchcase(low, p) for p in patterns)


@dataclass(frozen=True)
class FamilyMatch:
    name: str
    family: Family  # for thin evidence, the family's milder action (`Evidence.fewer`)
    feature: str | None  # the top reason that matched; None for the default
    evidence: str = ""  # how much evidence chose the action, in words; "" when none was asked


def family_for(playbook: Playbook, features: Sequence[str | None]) -> FamilyMatch:
    """The family of the first top reason (in order of importance) that any family matches."""
    for feature in features:
        if not feature:
            continue
        for name, family in playbook.families.items():
            if name != DEFAULT_FAMILY and matches(feature, family.patterns):
                return FamilyMatch(name, family, feature)
    return FamilyMatch(DEFAULT_FAMILY, playbook.families[DEFAULT_FAMILY], None)


NO_ACTION = Family(
    title="No action needed", do="No action needed",
    action="The risk is low. Keep in touch as usual; nothing here calls for a retention contact.",
    patterns=())


def _times(n: int, days: int) -> str:
    return f"{n} {'event' if n == 1 else 'events'} in the last {days} days"


def proportionate(playbook: Playbook, match: FamilyMatch, counts: Mapping[str, int] | None
                  ) -> FamilyMatch:
    """The match with its family's milder action while the evidence is thin: fewer than
    `evidence.at_least` events of its sign in `counts` (sign -> events in the last
    `evidence.days` days). `counts` None (no events known) counts as none."""
    ev = match.family.evidence
    if ev is None:
        return match
    n = int((counts or {}).get(ev.sign, 0))
    label = playbook.timeline.signs[ev.sign].label.lower()
    words = f"{label}: {_times(n, ev.days)}"
    if n >= ev.at_least:
        return replace(match, evidence=words)
    mild = Family(title=ev.fewer.title, do=ev.fewer.do, action=ev.fewer.action, patterns=())
    return replace(match, family=mild,
                   evidence=f"{words}, fewer than the {ev.at_least} that call for "
                            f"\u201c{match.family.step.lower()}\u201d")


def suggest(playbook: Playbook, band: str, features: Sequence[str | None],
            counts: Mapping[str, int] | None = None, weigh: bool = False) -> FamilyMatch:
    """The suggested action: none for a low-risk customer, else the family of the behavioural
    reasons (`family_for`). With `weigh`, an action is proportionate to the evidence
    (`proportionate`, from `counts`: sign -> recent events, see `sign_counts`)."""
    if band == "low":
        return FamilyMatch("none", NO_ACTION, None)
    match = family_for(playbook, features)
    return proportionate(playbook, match, counts) if weigh else match


def sign_for(playbook: Playbook, event_type: str) -> str | None:
    """The warning sign an event type shows, or None for plain activity."""
    for name, sign in playbook.timeline.signs.items():
        if matches(event_type, sign.patterns):
            return name
    return None

