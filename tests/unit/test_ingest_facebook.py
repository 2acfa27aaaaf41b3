"""Reading Facebook's Graph webhook body (services/ingest/facebook.py) on plain data."""

from __future__ import annotations

from typing import Any

import pytest

from services.ingest.facebook import is_notification, leadgen_changes
from services.ingest.graph import _error_of

pytestmark = pytest.mark.unit


def change(leadgen_id: Any, **more: Any) -> dict[str, Any]:
    return {"field": "leadgen", "value": {"leadgen_id": leadgen_id, "page_id": "1", **more}}


def test_every_leadgen_change_of_every_entry_once() -> None:
    body = {
        "object": "page",
        "entry": [
            {"changes": [change("11"), change(12), {"field": "feed", "value": {"x": 1}}]},
            {"changes": [change("11", form_id="9"), change("13", ad_id="7")]},
        ],
    }
    assert leadgen_changes(body) == [
        {"leadgen_id": "11", "page_id": "1"},
        {"leadgen_id": "12", "page_id": "1"},
        {"leadgen_id": "13", "page_id": "1", "ad_id": "7"},
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"object": "page"},
        {"object": "page", "entry": "x"},
        {"object": "page", "entry": [None, 1, {"changes": "x"}, {"changes": [None, "x"]}]},
        {"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": [1]}]}]},
        {"object": "page", "entry": [{"changes": [change(None), change(True), change("1a")]}]},
        {"object": "page", "entry": [{"changes": [change("1" * 65), change(""), change(1.5)]}]},
    ],
)
def test_hostile_bodies_make_no_lead(body: dict[str, Any]) -> None:
    assert leadgen_changes(body) == []


def test_only_a_facebook_webhooks_page_object_is_a_notification() -> None:
    assert is_notification("facebook", {"object": "page", "entry": []})
    assert not is_notification("generic", {"object": "page", "entry": []})
    assert not is_notification("facebook", {"id": "1", "field_data": []})


def test_graph_errors_are_named_without_their_message() -> None:
    body = b'{"error": {"message": "lead 123 of Benjie", "type": "OAuthException", "code": 190}}'
    assert _error_of(400, body) == ("Graph API answered 400 (code 190, OAuthException)", 190)
    assert _error_of(502, b"<html>") == ("Graph API answered 502", None)
