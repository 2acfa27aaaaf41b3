"""Provider adapters: email over SMTP (aiosmtplib) and SMS through a Twilio-compatible
Messages API. Each sends one batch (one digest) to one recipient and returns the
provider's reference once the provider accepted it, or raises :class:`SendError`.

Error texts kept for the dead-letter entry are scrubbed of emails and phones: an SMTP
server may echo the address it refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

import aiohttp
import aiosmtplib

from services.notifier.render import Item, render_email, render_sms
from services.notifier.settings import NotifierSettings
from shared.logs import scrub


class SendError(Exception):
    """The provider did not accept the message. ``permanent``: retrying cannot help."""

    def __init__(self, message: str, *, code: str, permanent: bool = False) -> None:
        super().__init__(scrub(message)[:1000])
        self.code = code
        self.permanent = permanent


class Sender(Protocol):
    channel: str

    async def send(self, recipient: str, items: Sequence[Item]) -> str | None: ...


class EmailSender:
    channel = "email"

    def __init__(self, settings: NotifierSettings) -> None:
        self._s = settings

    async def send(self, recipient: str, items: Sequence[Item]) -> str | None:
        s = self._s
        if not s.smtp_host:
            raise SendError(
                "email is not configured (LEADWIRE_SMTP_HOST)",
                code="not_configured",
                permanent=True,
            )
        message = render_email(items, sender=s.smtp_from, to=recipient, now=datetime.now(UTC))
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            use_tls=s.smtp_tls,
            # With credentials: TLS before the password, or no login at all.
            start_tls=s.smtp_start_tls(),
            validate_certs=s.smtp_validate_certs,
            timeout=s.notify_send_timeout_s,
        )

        async def deliver() -> None:
            await client.connect()
            await client.send_message(message)

        try:
            # Accepted once the server answered the message's DATA with 2xx.
            await asyncio.wait_for(deliver(), s.notify_send_timeout_s)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            permanent = all(c >= 500 for c in codes)
            raise SendError(
                f"recipient refused: {codes}",
                code=f"smtp_{codes[0] if codes else 'refused'}",
                permanent=permanent,
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise SendError(
                f"SMTP {exc.code}: {exc.message}",
                code=f"smtp_{exc.code}",
                permanent=exc.code >= 500,
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # A server (or a man in the middle) that offers no STARTTLS where it is
            # required: refused before any password was sent.
            code = "smtp_starttls_unavailable" if "STARTTLS" in str(exc) else type(exc).__name__
            raise SendError(f"{type(exc).__name__}: {exc}", code=code) from exc
        finally:
            # The outcome is known by now; saying goodbye must not change it.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), 2.0)
            client.close()
        return str(message["Message-ID"])


class SmsSender:
    channel = "sms"

    def __init__(self, settings: NotifierSettings, http: aiohttp.ClientSession) -> None:
        self._s = settings
        self._http = http

    def _configured(self) -> bool:
        s = self._s
        return bool(s.sms_base_url and s.sms_account_sid and s.sms_auth_token and s.sms_from)

    async def send(self, recipient: str, items: Sequence[Item]) -> str | None:
        s = self._s
        if not self._configured():
            raise SendError(
                "SMS is not configured (LEADWIRE_SMS_BASE_URL, _ACCOUNT_SID, _AUTH_TOKEN, _FROM)",
                code="not_configured",
                permanent=True,
            )
        assert s.sms_base_url and s.sms_account_sid and s.sms_auth_token and s.sms_from
        url = f"{s.sms_base_url.rstrip('/')}/2010-04-01/Accounts/{s.sms_account_sid}/Messages.json"
        form = {"To": recipient, "From": s.sms_from, "Body": render_sms(items)}
        try:
            async with self._http.post(
                url,
                data=form,
                headers={
                    "Authorization": aiohttp.encode_basic_auth(
                        s.sms_account_sid, s.sms_auth_token.get_secret_value()
                    )
                },
                timeout=aiohttp.ClientTimeout(total=s.notify_send_timeout_s),
            ) as resp:
                if 200 <= resp.status < 300:
                    try:
                        doc = await resp.json(content_type=None)
                    except (ValueError, aiohttp.ContentTypeError):
                        doc = None
                    return str(doc.get("sid")) if isinstance(doc, dict) and doc.get("sid") else None
                detail = (await resp.text())[:300]
                transient = resp.status >= 500 or resp.status in (408, 425, 429)
                raise SendError(
                    f"SMS provider answered {resp.status}: {detail}",
                    code=f"http_{resp.status}",
                    permanent=not transient,
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SendError(f"{type(exc).__name__}: {exc}", code=type(exc).__name__) from exc
