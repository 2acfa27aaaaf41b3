"""The load generator: leads at a bounded rate to a set of webhooks, each retried like a
vendor retries, and every attempt and its answer remembered (see :mod:`bench.loadgen`)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson

from bench.loadgen.vendors import (
    FIRST_NAMES,
    LAST_NAMES,
    PRODUCTS,
    STATUSES,
    URGENCIES,
    Person,
    Target,
    bad_payload,
    body_key,
    encode_body,
    github_headers,
    lead_payload,
    phone_for,
    standard_headers,
)

# Answers that say "nothing was accepted, try again later" (safe to retry without a key).
RETRY_DEFINITE = frozenset({429, 503})


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


@dataclass
class _Answer:
    """What one request got: a status and its JSON body, or an error."""

    status: int | None = None
    doc: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    definite: bool = False  # a failure that certainly accepted nothing
    retry_after: float | None = None


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
        first = time.monotonic()
        backoff = 0.5
        while True:
            started = time.monotonic()
            answer = await self._post(item)
            attempt = self._remember(item, started, answer)
            if self._settled(item, answer, attempt.request_id):
                return
            if time.monotonic() - first > self._give_up_s:
                item.final = "gave_up"
                return
            wait = answer.retry_after if answer.retry_after is not None else backoff
            await asyncio.sleep(min(wait, 5.0))
            backoff = min(backoff * 2, 5.0)

    async def _post(self, item: Item) -> _Answer:
        """One request: its status and JSON answer, or the failure."""
        assert self._session is not None
        answer = _Answer()
        try:
            async with self._session.post(
                item.target.url,
                data=item.body,
                headers=self._headers(item),
                timeout=self._timeout,
            ) as resp:
                answer.status = resp.status
                raw = await resp.read()
                with contextlib.suppress(ValueError):
                    doc = orjson.loads(raw) if raw else {}
                    answer.doc = doc if isinstance(doc, dict) else {}
                if "Retry-After" in resp.headers:
                    with contextlib.suppress(ValueError):
                        answer.retry_after = float(resp.headers["Retry-After"])
        except aiohttp.ClientConnectorError as exc:
            answer.error, answer.definite = f"connect: {type(exc).__name__}", True
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            answer.error = type(exc).__name__
        return answer

    def _remember(self, item: Item, started: float, answer: _Answer) -> Attempt:
        ms = (time.monotonic() - started) * 1000
        doc, status = answer.doc, answer.status
        attempt = Attempt(
            at=started - self._t0,
            status=status,
            answer=doc.get("status"),
            request_id=doc.get("request_id") if isinstance(doc.get("request_id"), str) else None,
            error=answer.error,
            ms=round(ms, 1),
        )
        item.attempts.append(attempt)
        self._log(item, attempt)
        self.counts[f"status_{status}" if status is not None else "error"] += 1
        return attempt

    def _settled(self, item: Item, answer: _Answer, request_id: str | None) -> bool:
        """Whether the item is answered for good (acked, refused, or not safe to retry)."""
        status = answer.status
        if status is not None and 200 <= status < 300:
            item.final = "acked"
            item.request_id = request_id
            if answer.doc.get("status"):
                item.answers.append(str(answer.doc["status"]))
            if self._on_ack is not None:
                self._on_ack(item)
            if not self._stopping:
                self._follow_up(item)
            return True
        if status is not None and 400 <= status < 500 and status not in RETRY_DEFINITE:
            item.final = "refused"
            item.request_id = request_id
            return True
        if not (answer.definite or status in RETRY_DEFINITE or item.key is not None):
            item.final = "indeterminate"  # no key: a retry could make a second lead
            return True
        return False

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
