"""Board rules: pure evaluation, no I/O.

A workspace's rules are tried in (priority, created_at) order. A rule matches a lead when
its webhook is unset or is the lead's webhook, and every condition holds. A condition is
``{"field": name, "op": "eq" | "in", "value": v}`` on any field of the mapped lead
(``product``, ``lead_status``, a mapped field, or a custom field, see
:meth:`MappedLead.field`). Strings compare case-insensitively. The first matching rule
sets the contact's board. A condition this code does not understand never matches, so a
malformed rule routes nothing rather than everything.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from shared.events import MappedLead

OPS = ("eq", "in")


def normalize(value: Any) -> str:
    """How values compare: as text, case-insensitive, trimmed ("5" matches 5, "CA" "ca")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip().casefold()


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any
    # The accepted values, normalized once when the rule is loaded.
    expected: frozenset[str] = dataclass_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = self.value if self.op == "in" else [self.value]
        object.__setattr__(
            self, "expected", frozenset(normalize(v) for v in values if v is not None)
        )


@dataclass(frozen=True)
class BoardRule:
    id: uuid.UUID
    board_id: uuid.UUID
    board_name: str | None
    webhook_id: uuid.UUID | None
    conditions: tuple[Condition, ...]
    # False when a condition is malformed: the rule then never matches.
    valid: bool = True


def parse_conditions(raw: Any) -> tuple[tuple[Condition, ...], bool]:
    """Conditions from their stored JSON, and whether all of them were well-formed."""
    if raw is None:
        return (), True
    if not isinstance(raw, list):
        return (), False
    out: list[Condition] = []
    valid = True
    for item in raw:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("field"), str)
            or item.get("op", "eq") not in OPS
            or "value" not in item
        ):
            valid = False
            continue
        op = item.get("op", "eq")
        value = item["value"]
        if op == "in" and not isinstance(value, list):
            value = [value]
        out.append(Condition(field=item["field"], op=op, value=value))
    return tuple(out), valid


def condition_holds(condition: Condition, lead: MappedLead) -> bool:
    actual = lead.field(condition.field)
    if actual is None:
        return False
    candidates: Sequence[Any] = actual if isinstance(actual, list) else [actual]
    return any(normalize(a) in condition.expected for a in candidates if a is not None)


def rule_matches(rule: BoardRule, webhook_id: uuid.UUID, lead: MappedLead) -> bool:
    if not rule.valid:
        return False
    if rule.webhook_id is not None and rule.webhook_id != webhook_id:
        return False
    return all(condition_holds(c, lead) for c in rule.conditions)


def first_match(
    rules: Iterable[BoardRule], webhook_id: uuid.UUID, lead: MappedLead
) -> BoardRule | None:
    """The first rule (rules come in evaluation order) that matches the lead."""
    for rule in rules:
        if rule_matches(rule, webhook_id, lead):
            return rule
    return None
