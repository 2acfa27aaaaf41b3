"""The gateway's step for what a lead buyer set on the webhook: its acceptance criteria
(:mod:`services.ingest.acceptance`), checked after ``map_and_validate``."""

from __future__ import annotations

from typing import Any

from services.ingest.acceptance import REASON, check
from services.ingest.deps import Deps
from services.ingest.intake import Answered, Intake
from services.ingest.rejections import reject
from shared.events import MappedLead


def accept(intake: Intake, payload: dict[str, Any], lead: MappedLead, deps: Deps) -> None:
    """A lead the webhook's criteria refuse is answered ``400`` (reason ``not_accepted``,
    a field error per failed criterion) and recorded like any rejection."""
    errors = check(intake.config.acceptance, lead)
    if errors:
        raise Answered(reject(intake, deps, 400, REASON, errors, payload))
