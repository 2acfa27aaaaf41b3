"""The gateway's settings a person writes (through ``leadwire webhook`` and the management
API): a webhook's acceptance criteria, checked here the way the gateway reads them
(:mod:`services.ingest.acceptance`)."""

from __future__ import annotations

from services.ingest.acceptance import (
    NO_CRITERIA,
    Acceptance,
    AcceptanceError,
    build,
    from_stored,
    parse_allow,
)

__all__ = ["NO_CRITERIA", "Acceptance", "AcceptanceError", "build", "from_stored", "parse_allow"]
