"""A load generator that behaves like a set of lead vendors, and remembers everything it did.

Every logical lead it sends carries a unique id (``soak_id``, an unmapped body field, so
it ends up in the lead's custom fields and in the stored outcome): that is what the soak's
Jepsen-style account counts by. A lead is sent to one webhook in the vendor's shape:

- ``generic`` (JSON, Standard Webhooks signature: the ``webhook-id`` header is the
  idempotency key), ``leadconduit`` (JSON, the body's ``lead.id`` is the key),
  ``zapier`` (form-encoded, no key), ``facebook`` (JSON lead object, GitHub-style
  ``X-Hub-Signature-256``, the body's ``id`` is the key), ``buyerlink`` (JSON, Standard
  Webhooks signature);
- a share of leads are **the same person again** (a new lead, same phone/email/CRM id,
  formatted differently), **bad payloads** (no contact, an invalid phone or email, broken
  JSON: a ``400`` is expected), **vendor retries** of an acknowledged keyed lead (same
  key, same body, re-signed: answered as a duplicate) and a few **key conflicts** (same key,
  another body: ``409``, or accepted and then rejected by the processor);
- like a vendor, it retries a request that was not accepted (``503`` while Kafka is away,
  ``429``, connection refused) after ``Retry-After`` / a backoff, with the same key when
  the lead has one. A keyed lead is also retried after an ambiguous failure (the
  connection dropped mid-request); an unkeyed one is not (a retry could make a second
  lead; the attempt is recorded as *indeterminate*).

Bounded: a rate (leads per second), a total and a duration; a cap on requests in flight;
each lead gives up after ``give_up_s``. Every attempt and its answer is appended to a JSON
lines file when ``record_path`` is given. All traffic goes to the URLs given (127.0.0.1).

``bench.soak`` and ``bench.pipeline`` use it; ``python -m bench.loadgen URL --rate 20
--seconds 10`` sends plain unsigned generic leads to one webhook URL.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import random
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson

# The vendor shapes this generator can speak (a leadwire template name each).
VENDORS = ("generic", "leadconduit", "zapier", "facebook", "buyerlink")
PRODUCTS = ("Solar", "Bath Remodel", "Roofing", "Windows", "HVAC")
STATUSES = ("new", "open", "hot")
URGENCIES = ("hot", "warm", "cold")
FIRST_NAMES = (
    "Ann",
    "Benjie",
    "Carla",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jamal",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
)
LAST_NAMES = (
    "Lee",
    "Malinao",
    "Okafor",
    "Novak",
    "Garcia",
    "Haddad",
    "Ito",
    "Silva",
    "Kowalski",
    "Nguyen",
    "Brown",
    "Rossi",
    "Schmidt",
    "Khan",
    "Moreau",
)
AREA_CODES = (626, 213, 310, 415, 646, 312, 617, 206, 303, 512, 702, 404)

# Answers that say "nothing was accepted, try again later" (safe to retry without a key).
RETRY_DEFINITE = frozenset({429, 503})


@dataclass(frozen=True)
class Target:
    """One webhook the generator sends to."""

    name: str
    id: str
    url: str
    vendor: str  # one of VENDORS
    auth: str = "none"  # none | standard | github
    secret: str | None = None
    weight: float = 1.0
    workspace: str = ""
    workspace_id: str = ""

    @property
    def keyed(self) -> bool:
        """Whether every request carries an idempotency key (header or body)."""
        return self.auth == "standard" or self.vendor in ("leadconduit", "facebook")

    @property
    def form(self) -> bool:
        return self.vendor == "zapier"


@dataclass(frozen=True)
class Person:
    n: int
    first: str
    last: str
    phone: str  # E.164
    email: str
    crm_id: str
    product: str
    status: str
    urgency: str


@dataclass
class Attempt:
    at: float  # seconds since the generator started
    status: int | None
    answer: str | None  # the answer's "status" field (accepted, duplicate, rejected, ...)
    request_id: str | None
    error: str | None
    ms: float


@dataclass
class Item:
    """One thing sent (possibly several attempts): a lead, a bad payload, a vendor retry of
    an acknowledged lead, or a key conflict."""

    soak_id: str
    target: Target
    kind: str  # new | repeat | bad | retry | conflict
    person: Person | None
    body: bytes
    content_type: str
    key: str | None  # the webhook-id header (standard), or the body key's value
    prefer_wait: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    # acked (2xx) | refused (a definite 4xx) | indeterminate | gave_up | pending
    final: str = "pending"
    request_id: str | None = None  # from the first 2xx (or the rejection's id)
    answers: list[str] = field(default_factory=list)

    @property
    def acked(self) -> bool:
        return self.final == "acked"

    @property
    def status_codes(self) -> list[int | None]:
        return [a.status for a in self.attempts]

    @property
    def last_status(self) -> int | None:
        return self.attempts[-1].status if self.attempts else None


@dataclass(frozen=True)
class Mix:
    """Shares of each kind of send (the rest are new people)."""

    repeat: float = 0.10  # the same person again (a new lead)
    bad: float = 0.05  # a payload the gateway must refuse with 400
    vendor_retry: float = 0.10  # of acknowledged keyed leads: sent again, same key and body
    conflict: float = 0.01  # of acknowledged keyed leads: same key, another body
    prefer_wait: float = 0.05  # of new leads: ask for the synchronous answer


NO_EXTRAS = Mix(repeat=0.0, bad=0.0, vendor_retry=0.0, conflict=0.0, prefer_wait=0.0)


def phone_for(n: int) -> str:
    """A distinct valid US number per person number (E.164)."""
    area = AREA_CODES[n % len(AREA_CODES)]
    rest = n // len(AREA_CODES)
    exchange = 201 + (rest // 10_000) % 700
    if exchange % 100 == 11:  # N11 codes are not exchanges
        exchange += 1
    return f"+1{area}{exchange}{rest % 10_000:04d}"


def format_phone(e164: str, style: int) -> str:
    digits = e164[2:]
    a, b, c = digits[:3], digits[3:6], digits[6:]
    return (e164, f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}")[style % 5]


def standard_headers(
    secret: str, msg_id: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """Standard Webhooks headers for ``body`` (``whsec_`` secret)."""
    ts = str(int(now if now is not None else time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{ts}.".encode() + body
    sig = base64.b64encode(hmac.digest(key, signed, hashlib.sha256)).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": f"v1,{sig}"}


def github_headers(secret: str, body: bytes) -> dict[str, str]:
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={sig}"}


# --- payloads --------------------------------------------------------------------------


def lead_payload(
    vendor: str, person: Person, soak_id: str, rng: random.Random, *, repeat: bool
) -> dict[str, Any]:
    """A realistic body for ``vendor`` carrying ``person`` and the soak id."""
    style = rng.randrange(5) if repeat else 0
    email = person.email.upper() if repeat and rng.random() < 0.5 else person.email
    phone = format_phone(person.phone, style)
    if vendor == "generic":
        return {
            "firstname": person.first,
            "lastname": person.last,
            "phone_number": phone,
            "email": email,
            "external_crm_id": person.crm_id,
            "product": person.product,
            "lead_status": person.status,
            "urgency": person.urgency,
            "soak_id": soak_id,
            "page": "/quote",
            "utm_source": rng.choice(("google", "facebook", "bing")),
        }
    if vendor == "leadconduit":
        return {
            "lead": {"id": f"lc-{soak_id}"},
            "first_name": person.first,
            "last_name": person.last,
            "email": email,
            "phone_1": phone,
            "address_1": f"{100 + person.n % 900} N Lake Ave",
            "city": "Pasadena",
            "state": "CA",
            "postal_code": "91101",
            "product": person.product,
            "urgency": person.urgency,
            "soak_id": soak_id,
            "trustedform_cert_url": f"https://cert.trustedform.com/{hashlib.sha1(soak_id.encode()).hexdigest()}",
        }
    if vendor == "zapier":
        return {
            "first_name": person.first,
            "last_name": person.last,
            "email": email,
            "phone": phone,
            "product": person.product,
            "zip": "91101",
            "urgency": person.urgency,
            "soak_id": soak_id,
        }
    if vendor == "facebook":
        return {
            "id": f"fb-{soak_id}",
            "created_time": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime()),
            "ad_id": "23850000000000001",
            "form_id": "987654321098765",
            "field_data": [
                {"name": "full_name", "values": [f"{person.first} {person.last}"]},
                {"name": "email", "values": [email]},
                {"name": "phone_number", "values": [phone]},
                {"name": "what_service_do_you_need?", "values": [person.product]},
            ],
            "urgency": person.urgency,
            "soak_id": soak_id,
        }
    if vendor == "buyerlink":
        return {
            "lead_id": f"BL-{soak_id}",
            "crm_id": person.crm_id,
            "first_name": person.first,
            "last_name": person.last,
            "email": email,
            "phone": phone,
            "service": person.product,
            "zip": "91101",
            "urgency": person.urgency,
            "soak_id": soak_id,
        }
    raise ValueError(f"unknown vendor {vendor!r}")


def bad_payload(
    vendor: str, soak_id: str, rng: random.Random
) -> tuple[dict[str, Any] | None, bytes | None]:
    """A body the gateway must refuse with 400: (dict, None), or (None, raw bytes)."""
    choice = rng.randrange(4 if vendor != "zapier" else 3)
    base: dict[str, Any] = {"soak_id": soak_id, "first_name": "Nobody", "product": "Solar"}
    if vendor == "leadconduit":
        base["lead"] = {"id": f"lc-{soak_id}"}
    if vendor == "facebook":
        base["id"] = f"fb-{soak_id}"
    if choice == 0:  # no phone, no email
        return base, None
    if choice == 1:  # not a phone number
        key = {"leadconduit": "phone_1", "generic": "phone_number"}.get(vendor, "phone")
        if vendor == "facebook":
            return {**base, "field_data": [{"name": "phone_number", "values": ["12345"]}]}, None
        return {**base, key: "12345"}, None
    if choice == 2:  # a malformed email and nothing else
        if vendor == "facebook":
            return {**base, "field_data": [{"name": "email", "values": ["not-an-email"]}]}, None
        return {**base, "email": "not-an-email@"}, None
    return None, b'{"soak_id": "' + soak_id.encode() + b'", "phone": '  # broken JSON


def encode_body(payload: dict[str, Any], form: bool) -> tuple[bytes, str]:
    if form:
        flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in payload.items()}
        return urllib.parse.urlencode(flat).encode(), "application/x-www-form-urlencoded"
    return orjson.dumps(payload), "application/json"


def body_key(target: Target, payload: dict[str, Any] | None) -> str | None:
    if payload is None:
        return None
    if target.vendor == "leadconduit":
        lead = payload.get("lead")
        return str(lead["id"]) if isinstance(lead, dict) and "id" in lead else None
    if target.vendor == "facebook":
        return str(payload["id"]) if "id" in payload else None
    return None


# --- the generator -----------------------------------------------------------------------


class LoadGenerator:
    def __init__(
        self,
        targets: list[Target],
        *,
        rate: float,
        total: int,
        seconds: float,
        mix: Mix = Mix(),
        seed: int = 1,
        run_id: str | None = None,
        record_path: Path | None = None,
        max_in_flight: int = 128,
        give_up_s: float = 120.0,
        request_timeout_s: float = 30.0,
        on_ack: Callable[[Item], None] | None = None,
    ) -> None:
        if not targets:
            raise ValueError("no targets")
        self.targets = targets
        self.rate = rate
        self.total = total
        self.seconds = seconds
        self.mix = mix
        self.rng = random.Random(seed)
        self.run_id = run_id or uuid.uuid4().hex[:6]
        self.items: dict[str, Item] = {}  # soak_id -> the lead (new, repeat, bad)
        self.extras: list[Item] = []  # vendor retries and conflicts (soak_id of their lead)
        self.persons: dict[str, list[Person]] = {t.name: [] for t in targets}
        self.person_target: dict[int, str] = {}
        self._next_person = 0
        self._seq = 0
        self._record_path = record_path
        self._record: IO[str] | None = None
        self._sem = asyncio.Semaphore(max_in_flight)
        self._give_up_s = give_up_s
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s, sock_connect=5)
        self._tasks: set[asyncio.Task[None]] = set()
        self._t0 = time.monotonic()
        self._stopping = False
        self._on_ack = on_ack
        self.counts: Counter[str] = Counter()
        self.started_at: float | None = None
        self.scheduled_until: float | None = None
        self._weights = [t.weight for t in targets]
        self._session: aiohttp.ClientSession | None = None

    # -- people and items ---------------------------------------------------------------------
    def _person(self, target: Target) -> Person:
        n = self._next_person
        self._next_person += 1
        rng = self.rng
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        person = Person(
            n=n,
            first=first,
            last=last,
            phone=phone_for(n),
            email=f"{first}.{last}.{self.run_id}.{n}@example.com".lower(),
            crm_id=f"crm-{self.run_id}-{n}",
            product=rng.choice(PRODUCTS),
            status=rng.choice(STATUSES),
            urgency=rng.choice(URGENCIES),
        )
        self.persons[target.name].append(person)
        self.person_target[n] = target.name
        return person

    def _soak_id(self, target: Target) -> str:
        self._seq += 1
        return f"{self.run_id}-{target.name}-{self._seq}"

    def next_item(self) -> Item:
        rng = self.rng
        target = rng.choices(self.targets, self._weights)[0]
        soak_id = self._soak_id(target)
        draw = rng.random()
        if draw < self.mix.bad:
            payload, raw = bad_payload(target.vendor, soak_id, rng)
            if raw is not None and not target.form:
                body, ctype = raw, "application/json"
            else:
                body, ctype = encode_body(payload or {"soak_id": soak_id}, target.form)
            return self._item(soak_id, target, "bad", None, body, ctype, payload)
        known = self.persons[target.name]
        if known and draw < self.mix.bad + self.mix.repeat:
            person, kind = rng.choice(known), "repeat"
        else:
            person, kind = self._person(target), "new"
        payload = lead_payload(target.vendor, person, soak_id, rng, repeat=kind == "repeat")
        body, ctype = encode_body(payload, target.form)
        item = self._item(soak_id, target, kind, person, body, ctype, payload)
        item.prefer_wait = kind == "new" and rng.random() < self.mix.prefer_wait
        return item

    def _item(
        self,
        soak_id: str,
        target: Target,
        kind: str,
        person: Person | None,
        body: bytes,
        ctype: str,
        payload: dict[str, Any] | None,
    ) -> Item:
        key = f"msg_{soak_id}" if target.auth == "standard" else body_key(target, payload)
        item = Item(
            soak_id=soak_id,
            target=target,
            kind=kind,
            person=person,
            body=body,
            content_type=ctype,
            key=key,
        )
        self.items[soak_id] = item
        return item

    def _follow_up(self, item: Item) -> None:
        """After an acknowledged keyed lead: maybe a vendor retry or a key conflict."""
        if item.kind not in ("new", "repeat") or item.key is None:
            return
        draw = self.rng.random()
        if draw < self.mix.vendor_retry:
            extra = Item(
                soak_id=item.soak_id,
                target=item.target,
                kind="retry",
                person=item.person,
                body=item.body,
                content_type=item.content_type,
                key=item.key,
            )
        elif draw < self.mix.vendor_retry + self.mix.conflict:
            if item.target.form:
                return
            payload = orjson.loads(item.body)
            payload["note"] = "changed after the first delivery"
            extra = Item(
                soak_id=item.soak_id,
                target=item.target,
                kind="conflict",
                person=item.person,
                body=orjson.dumps(payload),
                content_type=item.content_type,
                key=item.key,
            )
        else:
            return
        self.extras.append(extra)
        delay = self.rng.uniform(0.5, 5.0)
        self._spawn(self._deliver(extra, delay=delay))

    # -- sending -----------------------------------------------------------------------------
    def _headers(self, item: Item) -> dict[str, str]:
        headers = {
            "Content-Type": item.content_type,
            "User-Agent": f"leadwire-soak/{item.target.vendor}",
        }
        t = item.target
        if t.auth == "standard" and t.secret and item.key:
            headers.update(standard_headers(t.secret, item.key, item.body))
        elif t.auth == "github" and t.secret:
            headers.update(github_headers(t.secret, item.body))
        if item.prefer_wait:
            headers["Prefer"] = "wait=5"
        return headers

    def _log(self, item: Item, attempt: Attempt) -> None:
        if self._record is None:
            return
        self._record.write(
            orjson.dumps(
                {
                    "t": round(attempt.at, 3),
                    "webhook": item.target.name,
                    "soak_id": item.soak_id,
                    "kind": item.kind,
                    "attempt": len(item.attempts),
                    "key": item.key,
                    "status": attempt.status,
                    "answer": attempt.answer,
                    "request_id": attempt.request_id,
                    "error": attempt.error,
                    "ms": attempt.ms,
                }
            ).decode()
            + "\n"
        )

    async def _deliver(self, item: Item, *, delay: float = 0.0, holding: bool = False) -> None:
        """Send ``item`` until it is answered for good; ``holding``: the caller already took
        this item's slot of the in-flight bound."""
        if delay:
            await asyncio.sleep(delay)
        if not holding:
            await self._sem.acquire()
        try:
            await self._attempts(item)
        finally:
            self._sem.release()

    async def _attempts(self, item: Item) -> None:
        assert self._session is not None
        first = time.monotonic()
        backoff = 0.5
        while True:
            started = time.monotonic()
            status: int | None = None
            answer: dict[str, Any] = {}
            error: str | None = None
            definite = False  # a failure that certainly accepted nothing
            retry_after: float | None = None
            try:
                async with self._session.post(
                    item.target.url,
                    data=item.body,
                    headers=self._headers(item),
                    timeout=self._timeout,
                ) as resp:
                    status = resp.status
                    raw = await resp.read()
                    with contextlib.suppress(ValueError):
                        doc = orjson.loads(raw) if raw else {}
                        answer = doc if isinstance(doc, dict) else {}
                    if "Retry-After" in resp.headers:
                        with contextlib.suppress(ValueError):
                            retry_after = float(resp.headers["Retry-After"])
            except aiohttp.ClientConnectorError as exc:
                error, definite = f"connect: {type(exc).__name__}", True
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = type(exc).__name__
            ms = (time.monotonic() - started) * 1000
            request_id = (
                answer.get("request_id") if isinstance(answer.get("request_id"), str) else None
            )
            attempt = Attempt(
                at=started - self._t0,
                status=status,
                answer=answer.get("status"),
                request_id=request_id,
                error=error,
                ms=round(ms, 1),
            )
            item.attempts.append(attempt)
            self._log(item, attempt)
            self.counts[f"status_{status}" if status is not None else "error"] += 1
            if status is not None and 200 <= status < 300:
                item.final = "acked"
                item.request_id = request_id
                if answer.get("status"):
                    item.answers.append(str(answer["status"]))
                if self._on_ack is not None:
                    self._on_ack(item)
                if not self._stopping:
                    self._follow_up(item)
                return
            if status is not None and 400 <= status < 500 and status not in RETRY_DEFINITE:
                item.final = "refused"
                item.request_id = request_id
                return
            retryable = definite or status in RETRY_DEFINITE or item.key is not None
            if not retryable:
                item.final = "indeterminate"  # no key: a retry could make a second lead
                return
            if time.monotonic() - first > self._give_up_s:
                item.final = "gave_up"
                return
            await asyncio.sleep(min(retry_after if retry_after is not None else backoff, 5.0))
            backoff = min(backoff * 2, 5.0)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Send at ``rate`` until ``total`` leads or ``seconds`` are reached (or ``stop``),
        then wait for every outstanding lead to finish (bounded by ``give_up_s``)."""
        if self._record_path is not None:
            self._record_path.parent.mkdir(parents=True, exist_ok=True)
            self._record = await asyncio.to_thread(open, self._record_path, "a", buffering=1)
        connector = aiohttp.TCPConnector(limit=256, force_close=False)
        self._session = aiohttp.ClientSession(connector=connector)
        self._t0 = time.monotonic()
        self.started_at = time.time()
        try:
            interval = 1.0 / self.rate
            next_at = self._t0
            sent = 0
            while sent < self.total and time.monotonic() - self._t0 < self.seconds:
                if stop is not None and stop.is_set():
                    break
                now = time.monotonic()
                if next_at > now:
                    await asyncio.sleep(next_at - now)
                next_at += interval
                # Backpressure: a lead is only scheduled when a slot is free (its task keeps it).
                await self._sem.acquire()
                self._spawn(self._deliver(self.next_item(), holding=True))
                sent += 1
            self.scheduled_until = self.elapsed()
            self._stopping = True  # no new follow-ups; retries in flight finish
            while self._tasks:
                await asyncio.wait(set(self._tasks))
        finally:
            for task in list(self._tasks):
                task.cancel()
            await self._session.close()
            if self._record is not None:
                self._record.close()

    # -- summaries ------------------------------------------------------------------------------
    def summary(self) -> dict[str, dict[str, int]]:
        """Per webhook: what was sent and how it was answered."""
        out: dict[str, dict[str, int]] = {}
        for item in [*self.items.values(), *self.extras]:
            row = out.setdefault(item.target.name, Counter())
            row[f"{item.kind}"] += 1
            row[f"{item.kind}_{item.final}"] += 1
            row["requests"] += len(item.attempts)
            for a in item.attempts:
                if a.status in (429, 503):
                    row[f"answered_{a.status}"] += 1
                elif a.status is None:
                    row["connection_errors"] += 1
        return {k: dict(v) for k, v in out.items()}


async def _main() -> None:
    parser = argparse.ArgumentParser(description="Send generic leads to one unsigned webhook URL.")
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    target = Target(name="hook", id="", url=args.url, vendor="generic")
    gen = LoadGenerator(
        [target],
        rate=args.rate,
        total=int(args.rate * args.seconds) + 1,
        seconds=args.seconds,
        mix=NO_EXTRAS,
    )
    await gen.run()
    print(json.dumps(gen.summary(), indent=2))


if __name__ == "__main__":
    asyncio.run(_main())
