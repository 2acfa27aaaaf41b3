"""The gateway's 202 is put together from cached parts (issue 15: fewer allocations per
request); it must stay byte for byte what its body model gives."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.bodies import Accepted
from services.ingest.responses import accepted_response, status_url
from services.ingest.settings import IngestSettings

pytestmark = pytest.mark.unit


def _model_bytes(cfg: IngestSettings, webhook_id: uuid.UUID, request_id: uuid.UUID) -> bytes:
    body = Accepted(
        success=True,
        request_id=request_id,
        webhook_id=webhook_id,
        status="accepted",
        status_url=status_url(cfg, webhook_id, request_id),
    )
    return body.model_dump_json(exclude_unset=True).encode()


@settings(max_examples=200, deadline=None)
@given(
    public_url=st.one_of(
        st.sampled_from(["http://localhost:8080", "https://leads.example.com/", "http://gw"]),
        st.text(min_size=1, max_size=40).map(lambda t: "https://" + t),
    ),
    webhook_id=st.uuids(),
    request_id=st.uuids(),
)
def test_the_accepted_body_is_the_models_bytes(
    public_url: str, webhook_id: uuid.UUID, request_id: uuid.UUID
) -> None:
    cfg = IngestSettings(public_url=public_url)
    response = accepted_response(cfg, webhook_id, request_id)
    assert response.status == 202
    assert response.content_type == "application/json"
    assert response.body == _model_bytes(cfg, webhook_id, request_id)
