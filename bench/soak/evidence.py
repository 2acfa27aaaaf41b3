"""What the soak's account counts, read once after the drain: the database's leads, requests
and contacts, the raw and outcome topics, the archive, analytics, and the notifications
that reached the SMTP server and the SMS provider or were dead-lettered."""

from __future__ import annotations

import gzip
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench.lag import GROUPS
from bench.loadgen import Target
from bench.sinks import Mail, SmsSink, SmtpSink
from bench.soak.readings import committed_offsets, read_topic
from bench.soak.workspaces import WorkspacePlan
from bench.stack import LaunchedStack
from shared import topics
from shared.s3 import s3_client
from shared.settings import CommonSettings

# A notification: (event id, channel, recipient).
Key = tuple[str, str, str]


@dataclass
class Evidence:
    leads_of: dict[str, list[dict[str, Any]]]  # soak id -> its lead rows
    unattributed: Counter[str]  # webhook id -> leads without a soak id
    in_raw: dict[str, bool]  # soak id -> True if some copy is beyond the committed offset
    db_status: dict[str, dict[str, str]]  # webhook id -> request id -> status
    processed_leads: dict[str, dict[str, Any]]  # request id -> its processed lead
    contact_counts: dict[str, int]  # workspace id -> contacts
    sends: dict[str, int]  # "channel/status" -> notification_sends rows
    outcome_type: dict[str, dict[str, str]]  # webhook id -> request id -> outcome type
    archived: dict[str, set[str]]  # webhook id -> request ids with an archive record
    pointers: set[str]  # request ids the archive index holds
    analytics: dict[str, dict[str, Any]]  # webhook id -> its analytics metrics
    mails: list[Mail]  # what the SMTP server received
    texts: list[dict[str, str]]  # what the SMS provider received
    dead: dict[Key, list[str]]  # dead-lettered notifications -> their reasons


@dataclass
class _Database:
    lead_rows: list[asyncpg.Record]
    request_rows: list[asyncpg.Record]
    contact_counts: dict[str, int]
    sends: dict[str, int]


async def _database(
    settings: CommonSettings, targets: list[Target], plans: list[WorkspacePlan]
) -> _Database:
    ids = [uuid.UUID(t.id) for t in targets]
    conn = await asyncpg.connect(settings.database_url, timeout=10)
    try:
        lead_rows = await conn.fetch(
            """SELECT l.webhook_id::text AS webhook_id, l.contact_id::text AS contact_id,
                      l.request_id::text AS request_id,
                      wr.result->'lead'->'custom'->>'soak_id' AS soak_id
               FROM leads l LEFT JOIN webhook_requests wr ON wr.request_id = l.request_id
               WHERE l.webhook_id = ANY($1::uuid[])""",
            ids,
        )
        request_rows = await conn.fetch(
            """SELECT request_id::text AS request_id, webhook_id::text AS webhook_id, status,
                      CASE WHEN status = 'processed' THEN result->'lead' END AS lead
               FROM webhook_requests WHERE webhook_id = ANY($1::uuid[])""",
            ids,
        )
        contact_counts = {
            str(r["workspace_id"]): r["n"]
            for r in await conn.fetch(
                "SELECT workspace_id, count(*) AS n FROM contacts WHERE workspace_id = ANY($1::uuid[]) GROUP BY 1",
                [uuid.UUID(p.id) for p in plans],
            )
        }
        sends = await conn.fetch(
            "SELECT channel, status, count(*) AS n FROM notification_sends GROUP BY 1, 2"
        )
    finally:
        await conn.close()
    return _Database(
        lead_rows,
        request_rows,
        contact_counts,
        {f"{r['channel']}/{r['status']}": r["n"] for r in sends},
    )


def _leads_by_soak_id(
    lead_rows: list[asyncpg.Record],
) -> tuple[dict[str, list[dict[str, Any]]], Counter[str]]:
    leads_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    unattributed: Counter[str] = Counter()
    for r in lead_rows:
        if r["soak_id"]:
            leads_of[r["soak_id"]].append(dict(r))
        else:
            unattributed[r["webhook_id"]] += 1
    return leads_of, unattributed


def _in_raw(
    raw: list[tuple[int, int, dict[str, Any]]],
    committed: dict[tuple[str, int], int],
    raw_topic: str,
) -> dict[str, bool]:
    """Soak ids in the raw topic -> True if some copy is beyond the processor's offset."""
    in_raw: dict[str, bool] = {}
    for partition, offset, doc in raw:
        sid = ((doc.get("lead") or {}).get("custom") or {}).get("soak_id")
        if isinstance(sid, str):
            pending = offset >= committed.get((raw_topic, partition), 0)
            in_raw[sid] = in_raw.get(sid, False) or pending
    return in_raw


def _requests(
    request_rows: list[asyncpg.Record],
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, Any]]]:
    db_status: dict[str, dict[str, str]] = defaultdict(dict)
    processed_leads: dict[str, dict[str, Any]] = {}
    for r in request_rows:
        db_status[r["webhook_id"]][r["request_id"]] = r["status"]
        if r["status"] == "processed" and r["lead"] is not None:
            lead = orjson.loads(r["lead"]) if isinstance(r["lead"], str) else r["lead"]
            processed_leads[r["request_id"]] = lead if isinstance(lead, dict) else {}
    return db_status, processed_leads


def _outcome_types(outcomes: list[tuple[int, int, dict[str, Any]]]) -> dict[str, dict[str, str]]:
    outcome_type: dict[str, dict[str, str]] = defaultdict(dict)
    for _, _, doc in outcomes:
        wid, rid = str(doc.get("webhook_id")), str(doc.get("request_id"))
        outcome_type[wid][rid] = str(doc.get("type", "")).removeprefix("lead.")
    return outcome_type


def _deadlettered(deadletters: list[tuple[int, int, dict[str, Any]]]) -> dict[Key, list[str]]:
    dead: dict[Key, list[str]] = defaultdict(list)
    for _, _, entry in deadletters:
        for eid in entry.get("event_ids") or []:
            dead[(str(eid), str(entry.get("channel")), str(entry.get("recipient")))].append(
                str(entry.get("reason"))
            )
    return dead


async def _archive(
    settings: CommonSettings, targets: list[Target]
) -> tuple[dict[str, set[str]], set[str]]:
    """Per webhook, the request ids on a line of a segment in the bucket; and the request
    ids the archive index holds."""
    archived: dict[str, set[str]] = defaultdict(set)
    wanted = {t.id for t in targets}
    async with s3_client(settings) as s3:
        paginator = s3.get_paginator("list_objects_v2")
        for workspace in sorted({t.workspace_id for t in targets}):
            async for page in paginator.paginate(
                Bucket=settings.s3_bucket, Prefix=f"archive/{workspace}/"
            ):
                for obj in page.get("Contents", []):
                    resp = await s3.get_object(Bucket=settings.s3_bucket, Key=obj["Key"])
                    async with resp["Body"] as body:
                        lines = gzip.decompress(await body.read()).splitlines()
                    for record in map(orjson.loads, lines):
                        if record["webhook_id"] in wanted:
                            archived[record["webhook_id"]].add(record["request_id"])
    conn = await asyncpg.connect(settings.database_url, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT request_id::text AS rid FROM archive_index WHERE webhook_id = ANY($1::uuid[])",
            [uuid.UUID(w) for w in wanted],
        )
    finally:
        await conn.close()
    return archived, {r["rid"] for r in rows}


async def _analytics(stack: LaunchedStack, targets: list[Target]) -> dict[str, dict[str, Any]]:
    analytics: dict[str, dict[str, Any]] = {}
    async with aiohttp.ClientSession(headers=stack.auth()) as http:
        for t in targets:
            async with http.get(
                f"{stack.url('analytics')}/analytics/webhooks/{t.id}",
                timeout=aiohttp.ClientTimeout(total=15),
            ) as resp:
                analytics[t.id] = (await resp.json())["metrics"] if resp.status == 200 else {}
    return analytics


async def gather_evidence(
    stack: LaunchedStack,
    targets: list[Target],
    plans: list[WorkspacePlan],
    smtp: SmtpSink,
    sms: SmsSink,
) -> Evidence:
    settings = stack.settings
    assert settings is not None
    db = await _database(settings, targets, plans)
    raw = await read_topic(settings, topics.RAW)
    outcomes = await read_topic(settings, topics.OUTCOMES)
    deadletters = await read_topic(settings, topics.NOTIFY_DEADLETTER)
    committed = await committed_offsets(settings, GROUPS["processor"][0])
    leads_of, unattributed = _leads_by_soak_id(db.lead_rows)
    db_status, processed_leads = _requests(db.request_rows)
    archived, pointers = await _archive(settings, targets)
    analytics = await _analytics(stack, targets)
    return Evidence(
        leads_of=leads_of,
        unattributed=unattributed,
        in_raw=_in_raw(raw, committed, settings.topic(topics.RAW)),
        db_status=db_status,
        processed_leads=processed_leads,
        contact_counts=db.contact_counts,
        sends=db.sends,
        outcome_type=_outcome_types(outcomes),
        archived=archived,
        pointers=pointers,
        analytics=analytics,
        mails=smtp.received(),
        texts=list(sms.messages),
        dead=_deadlettered(deadletters),
    )
