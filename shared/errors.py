"""What a management operation refuses, for every front-end: a contract between the
services' ``admin`` modules, the CLI and the management API. The CLI shows ``message``
and ``hint`` and exits with ``exit_code``; the API answers ``status`` with
``{"success": false, "errors": [{field, code, message}]}`` (the gateway's shape)."""

from __future__ import annotations


class AdminError(Exception):
    """A refused operation: what went wrong, which field, and what to do about it."""

    status = 400
    exit_code = 1

    def __init__(
        self, message: str, *, code: str = "refused", field: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        self.hint = hint

    def as_error(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}

    def with_status(self, status: int) -> AdminError:
        """The same refusal, answered with another HTTP status."""
        self.status = status
        return self


class Invalid(AdminError):
    """A value given is malformed or out of range (the CLI's usage error, exit 2)."""

    exit_code = 2

    def __init__(
        self, message: str, *, code: str = "invalid", field: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message, code=code, field=field, hint=hint)


class NotFound(AdminError):
    """No such object, or one the caller may not see (the API never tells them apart)."""

    status = 404

    def __init__(
        self, message: str, *, code: str = "not_found", field: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message, code=code, field=field, hint=hint)


class Conflict(AdminError):
    """The change clashes with what is stored (a name taken, a token that exists)."""

    status = 409

    def __init__(
        self, message: str, *, code: str = "conflict", field: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message, code=code, field=field, hint=hint)


class Forbidden(AdminError):
    """The key may see this but not do it (a read key writing; a workspace key asking
    for what only an operator may)."""

    status = 403

    def __init__(
        self, message: str, *, code: str = "forbidden", field: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message, code=code, field=field, hint=hint)
