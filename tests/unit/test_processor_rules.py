"""Board rules: order, first match wins, webhook and field conditions."""

from __future__ import annotations

import uuid

import pytest

from services.processor.rules import BoardRule, first_match, parse_conditions
from shared.events import MappedLead

pytestmark = pytest.mark.unit

HOOK_A = uuid.uuid4()
HOOK_B = uuid.uuid4()


def rule(
    conditions: object = (), webhook_id: uuid.UUID | None = None, name: str = "r"
) -> BoardRule:
    parsed, valid = parse_conditions(list(conditions))  # type: ignore[call-overload]
    return BoardRule(
        id=uuid.uuid4(),
        board_id=uuid.uuid4(),
        board_name=name,
        webhook_id=webhook_id,
        conditions=parsed,
        valid=valid,
    )


LEAD = MappedLead(
    phone="+15550000001",
    product="Bath Remodel",
    lead_status="new",
    custom={"state": "CA", "score": 7, "tags": ["hot", "web"]},
)


def test_first_match_wins_in_order() -> None:
    rules = [
        rule([{"field": "product", "op": "eq", "value": "kitchen"}], name="kitchen"),
        rule([{"field": "product", "op": "eq", "value": "bath remodel"}], name="bath"),
        rule([], name="catch-all"),
    ]
    assert first_match(rules, HOOK_A, LEAD).board_name == "bath"  # type: ignore[union-attr]
    assert first_match(rules[:1], HOOK_A, LEAD) is None
    assert first_match(rules[2:], HOOK_A, LEAD).board_name == "catch-all"  # type: ignore[union-attr]


def test_webhook_scope() -> None:
    rules = [rule(webhook_id=HOOK_B, name="b-only"), rule(webhook_id=HOOK_A, name="a-only")]
    assert first_match(rules, HOOK_A, LEAD).board_name == "a-only"  # type: ignore[union-attr]
    assert first_match(rules, HOOK_B, LEAD).board_name == "b-only"  # type: ignore[union-attr]
    assert first_match(rules, uuid.uuid4(), LEAD) is None


@pytest.mark.parametrize(
    ("conditions", "matches"),
    [
        ([{"field": "lead_status", "op": "eq", "value": "NEW"}], True),
        ([{"field": "lead_status", "op": "in", "value": ["contacted", "new"]}], True),
        ([{"field": "lead_status", "op": "in", "value": ["contacted"]}], False),
        ([{"field": "state", "op": "eq", "value": "ca"}], True),  # custom field
        ([{"field": "score", "op": "eq", "value": "7"}], True),  # "7" == 7
        ([{"field": "score", "op": "in", "value": [1, 7]}], True),
        ([{"field": "tags", "op": "eq", "value": "HOT"}], True),  # list field: any element
        ([{"field": "missing", "op": "eq", "value": "x"}], False),
        (
            [
                {"field": "product", "op": "eq", "value": "bath remodel"},
                {"field": "lead_status", "op": "eq", "value": "old"},
            ],
            False,
        ),  # all must hold
        ([{"field": "product", "op": "regex", "value": ".*"}], False),  # unknown op: never
        ([{"field": "product"}], False),  # malformed
    ],
)
def test_conditions(conditions: list[dict[str, object]], matches: bool) -> None:
    assert (first_match([rule(conditions)], HOOK_A, LEAD) is not None) is matches


def test_parse_conditions_rejects_non_lists() -> None:
    assert parse_conditions({"field": "x"}) == ((), False)
    assert parse_conditions(None) == ((), True)
