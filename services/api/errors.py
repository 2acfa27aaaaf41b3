"""The management API's refusals: the shared contract (:mod:`shared.errors`)."""

from __future__ import annotations

from shared.errors import AdminError, Conflict, Forbidden, Invalid, NotFound

__all__ = ["AdminError", "Conflict", "Forbidden", "Invalid", "NotFound"]
