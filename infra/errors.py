"""The one exception type the infra manager raises: its message says what to fix."""

from __future__ import annotations


class InfraError(RuntimeError):
    """A local-infra problem, worded for the person who has to fix it."""
