"""Notifier settings (env prefix ``LEADWIRE_``), read once in ``__main__``."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from shared.settings import CommonSettings


class NotifierSettings(CommonSettings):
    # Consumer group of the outcome and alert consumer. A new group replays from offset 0;
    # the send table keeps that from sending anything twice.
    notify_group_id: str = "leadwire-notifier"
    # How long the broker may hold a fetch to gather events (up to 1 MiB) into one batch
    # (one transaction per batch): the real-time feed and the queue see a lead that much
    # later at most; 0: at once.
    notify_gather_ms: int = Field(default=250, ge=0, le=5000)

    # Queue semantics: a batch per (workspace, channel, recipient) is sent when it holds
    # notify_batch_size notifications or its oldest one waited notify_batch_window_s.
    notify_batch_size: int = Field(default=5, ge=1, le=100)
    notify_batch_window_s: float = Field(default=10.0, ge=0)
    # After the first attempt: at most this many retries, backoff base * 2**(n-1).
    notify_max_retries: int = Field(default=2, ge=0, le=10)
    notify_retry_base_s: float = Field(default=2.0, ge=0)
    # How often the dispatcher looks for due batches when nothing wakes it earlier.
    notify_poll_interval_s: float = Field(default=0.5, gt=0)
    # Bound on one provider call (SMTP transaction or SMS request).
    notify_send_timeout_s: float = Field(default=20.0, gt=0)
    # How long a claimed batch may stay 'sending' before it counts as interrupted (its
    # dispatcher died); unset = 2 x send timeout + 30 s. Must exceed the send timeout.
    notify_claim_lease_s: float | None = Field(default=None, gt=0)
    # Batches sent at the same time by one dispatcher.
    notify_concurrency: int = Field(default=8, ge=1, le=256)
    # Send rows (and the contact details they carry) are kept this long, and events
    # older than this are not notified (their send rows may be gone, so a replay of them
    # could not be deduplicated).
    notify_retention_days: float = Field(default=30.0, gt=0)
    # Origins allowed to open a Socket.IO connection ("*" for any; the token is the guard).
    notify_cors_origins: str = "*"
    # How often live Socket.IO sessions are checked against their workspace's current
    # token and status (a rotated token or a disabled workspace drops them).
    notify_realtime_recheck_s: float = Field(default=1.0, gt=0, le=60)

    # Email over SMTP. Without a host, email notifications are dead-lettered
    # ("not configured") rather than silently dropped.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # STARTTLS: true = required, false = never, unset = when the server offers it; with
    # credentials, unset means required (a password never follows a stripped STARTTLS),
    # and false is refused unless smtp_tls is on.
    smtp_starttls: bool | None = None
    # Implicit TLS from the first byte (usually port 465).
    smtp_tls: bool = False
    smtp_validate_certs: bool = True
    smtp_from: str = "leadwire <notifications@leadwire.localhost>"

    # SMS through a Twilio-compatible Messages API:
    # POST {base}/2010-04-01/Accounts/{sid}/Messages.json (To, From, Body), basic auth.
    sms_base_url: str | None = None
    sms_account_sid: str | None = None
    sms_auth_token: SecretStr | None = None
    sms_from: str | None = None

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> NotifierSettings:
        if (
            self.notify_claim_lease_s is not None
            and self.notify_claim_lease_s <= self.notify_send_timeout_s + 1
        ):
            raise ValueError(
                "LEADWIRE_NOTIFY_CLAIM_LEASE_S must exceed LEADWIRE_NOTIFY_SEND_TIMEOUT_S + 1"
            )
        return self

    @property
    def smtp_credentials(self) -> bool:
        return bool(self.smtp_username or self.smtp_password)

    def smtp_start_tls(self) -> bool | None:
        """What to tell aiosmtplib: STARTTLS required (True), never (False), or when
        offered (None). With credentials and no implicit TLS it is always required."""
        if self.smtp_credentials and not self.smtp_tls:
            return True
        return self.smtp_starttls

    def problems(self) -> list[str]:
        found = super().problems()
        if self.smtp_credentials and not self.smtp_tls and self.smtp_starttls is False:
            found.append(
                "LEADWIRE_SMTP_STARTTLS=false with SMTP credentials: the password would travel "
                "in clear; set LEADWIRE_SMTP_TLS=true (port 465) or leave STARTTLS on"
            )
        if self.production and self.smtp_host:
            if self.smtp_username and not (
                self.smtp_password and self.smtp_password.get_secret_value()
            ):
                found.append("LEADWIRE_SMTP_PASSWORD: empty")
            if not self.smtp_validate_certs:
                found.append(
                    "LEADWIRE_SMTP_VALIDATE_CERTS=false: the server's certificate unchecked"
                )
        if self.production and (self.sms_base_url or "").startswith("http://"):
            found.append("LEADWIRE_SMS_BASE_URL: http:// sends the provider's token in clear")
        return found

    @property
    def claim_lease_s(self) -> float:
        return self.notify_claim_lease_s or self.notify_send_timeout_s * 2 + 30
