"""The soak's Jepsen-style account: per webhook, what the generator sent against what the
system did (no I/O here: :mod:`bench.soak.evidence` reads it all first).

Per webhook, in this order: what was sent (:func:`_sent`), delivery (acked leads lost,
unseen or duplicated, :func:`_delivery`), the consumers against the database (outcome
events, analytics, archive: :func:`_consumers`), the notifications expected against those
received or dead-lettered (:func:`_notification_row`); then the promises each figure must
keep (:func:`_breaches`), the contacts per workspace and the totals.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import Item, LoadGenerator, Target
from bench.sinks import SmsSink, SmtpSink
from bench.soak.evidence import Evidence, Key, gather_evidence
from bench.soak.workspaces import WorkspacePlan
from bench.stack import LaunchedStack
from shared.events import outcome_event_id

FINAL = ("processed", "failed", "rejected", "duplicate")
TOTALS = (
    "sent",
    "acked",
    "not_acked",
    "indeterminate",
    "delivered",
    "lost",
    "unseen",
    "dup_leads",
    "dup_contacts",
    "bad",
    "bad_400",
    "bad_accepted",
    "vendor_retries",
    "conflicts",
    "answered_503",
)
# Row figures that break a promise when they are not 0.
MUST_BE_ZERO = (
    ("lost", "LOST: acknowledged, never in the database"),
    ("unseen", "UNSEEN: acknowledged, not processed after the drain"),
    ("dup_contacts", "DUPLICATE CONTACTS"),
    ("phantom_leads", "leads with an id the generator never sent"),
    ("bad_accepted", "bad payloads acknowledged"),
    ("retries_refused", "vendor retries (same key, same body) refused"),
)


@dataclass
class Account:
    rows: list[dict[str, Any]] = field(default_factory=list)  # per webhook
    totals: dict[str, Any] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def _fold(value: Any) -> str:
    return " ".join(str(value).split()).casefold()


def lead_field(lead: dict[str, Any], name: str) -> Any:
    if name in lead and name != "custom":
        return lead.get(name)
    return (lead.get("custom") or {}).get(name)


# --- notifications: expected from the processed leads, received, dead-lettered -------------


@dataclass
class Notifications:
    expected: dict[Key, str]  # -> webhook id
    got: Counter[Key]  # -> times received
    dead: dict[Key, list[str]]  # -> dead-letter reasons


def _notifications(
    ev: Evidence, targets: list[Target], plans: list[WorkspacePlan]
) -> Notifications:
    by_id = {t.id: t for t in targets}
    plan_of = {p.id: p for p in plans}
    expected: dict[Key, str] = {}
    prefix_to_event: dict[str, str] = {}
    for wid, statuses in ev.db_status.items():
        plan = plan_of[by_id[wid].workspace_id]
        for rid, status in statuses.items():
            if status != "processed":
                continue
            eid = str(outcome_event_id(uuid.UUID(rid)))
            prefix_to_event[eid[:8]] = eid
            for to in plan.emails:
                expected[(eid, "email", to)] = wid
            lead = ev.processed_leads.get(rid) or {}
            fld, value = plan.high_priority
            actual = lead_field(lead, fld)
            if actual is not None and _fold(actual) == _fold(value):
                expected[(eid, "sms", plan.sms)] = wid
    got: Counter[Key] = Counter()
    for mail in ev.mails:
        for to in mail.rcpt_tos:
            for eid in mail.event_ids:
                got[(eid, "email", to)] += 1
    for msg in ev.texts:
        for prefix in re.findall(r"\[ref ([0-9a-f]{8})\]", msg.get("Body", "")):
            got[(prefix_to_event.get(prefix, prefix), "sms", msg.get("To", ""))] += 1
    return Notifications(expected, got, ev.dead)


def _notification_row(n: Notifications, webhook_id: str, channel: str) -> dict[str, int]:
    keys = [k for k, w in n.expected.items() if w == webhook_id and k[1] == channel]
    row = Counter(expected=len(keys))
    for k in keys:
        got, dl = n.got.get(k, 0), n.dead.get(k, [])
        if got == 1 and not dl:
            row["sent"] += 1
        elif got == 0 and dl:
            row["deadlettered"] += 1
        elif got == 0:
            row["missing"] += 1
        elif got > 1:
            row["sent_twice"] += 1
        if got >= 1 and dl:
            if all(r == "interrupted" for r in dl):
                row["sent_and_interrupted"] += 1
            else:
                row["sent_and_deadlettered"] += 1
    return dict(row)


# --- per webhook: what was sent, and what became of it -------------------------------------


@dataclass
class Sent:
    leads: list[Item]  # new people and repeats
    bad: list[Item]
    retries: list[Item]  # vendor retries of acknowledged keyed leads
    conflicts: list[Item]  # same key, another body
    soak_ids: set[str]  # of the leads and bad payloads


def _sent(gen: LoadGenerator) -> dict[str, Sent]:
    items_of: dict[str, list[Item]] = defaultdict(list)
    for item in gen.items.values():
        items_of[item.target.id].append(item)
    extras_of: dict[str, list[Item]] = defaultdict(list)
    for item in gen.extras:
        extras_of[item.target.id].append(item)
    return {
        wid: Sent(
            leads=[i for i in items_of[wid] if i.kind in ("new", "repeat")],
            bad=[i for i in items_of[wid] if i.kind == "bad"],
            retries=[i for i in extras_of[wid] if i.kind == "retry"],
            conflicts=[i for i in extras_of[wid] if i.kind == "conflict"],
            soak_ids={i.soak_id for i in items_of[wid]},
        )
        for wid in {*items_of, *extras_of}
    }


def _lost(acked: list[Item], ev: Evidence) -> tuple[int, int, int, list[str]]:
    """Acked leads without a lead row: (lost at the gateway, lost at the processor, unseen,
    the lost ids)."""
    lost_gateway = lost_processor = unseen = 0
    lost_ids: list[str] = []
    for i in acked:
        if ev.leads_of.get(i.soak_id):
            continue
        if i.soak_id not in ev.in_raw:
            lost_gateway += 1
            lost_ids.append(i.soak_id)
        elif ev.in_raw[i.soak_id]:
            unseen += 1
        else:
            lost_processor += 1
            lost_ids.append(i.soak_id)
    return lost_gateway, lost_processor, unseen, lost_ids


def _duplicate_leads(
    sent: Sent, ev: Evidence, gen: LoadGenerator
) -> tuple[list[str], Counter[str]]:
    """The soak ids with more than one lead, and the extra leads by their likely cause."""
    dup_ids = [k for k, v in ev.leads_of.items() if k in sent.soak_ids and len(v) > 1]
    causes: Counter[str] = Counter()
    for k in dup_ids:
        item = gen.items[k]
        extra = len(ev.leads_of[k]) - 1
        earlier = [a.status for a in item.attempts[:-1]]
        if item.key is None and 503 in earlier:
            causes["unkeyed retry after a 503 ('nothing was accepted')"] += extra
        elif item.key is None and None in earlier:
            causes["unkeyed retry after a refused connection"] += extra
        else:
            causes["keyed" if item.key else "sent once"] += extra
    return dup_ids, causes


def _duplicate_contacts(sent: Sent, ev: Evidence) -> int:
    """Per person: the distinct contacts holding that person's leads, minus one."""
    contacts_of_person: dict[int, set[str]] = defaultdict(set)
    for i in sent.leads:
        if i.person is not None:
            for lead in ev.leads_of.get(i.soak_id, []):
                contacts_of_person[i.person.n].add(lead["contact_id"])
    return sum(len(c) - 1 for c in contacts_of_person.values() if len(c) > 1)


def _delivery(
    t: Target, sent: Sent, ev: Evidence, gen: LoadGenerator
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The delivery columns of a webhook's row, and examples of lost and duplicated ids."""
    leads, bad, retries, conflicts = sent.leads, sent.bad, sent.retries, sent.conflicts
    acked = [i for i in leads if i.acked]
    lost_gateway, lost_processor, unseen, lost_ids = _lost(acked, ev)
    dup_ids, dup_causes = _duplicate_leads(sent, ev, gen)
    columns = {
        "sent": len(leads),
        "acked": len(acked),
        "not_acked": len(leads) - len(acked),
        "indeterminate": sum(1 for i in leads if i.final in ("indeterminate", "gave_up")),
        "delivered": sum(1 for i in acked if ev.leads_of.get(i.soak_id)),
        "lost": lost_gateway + lost_processor,
        "lost_gateway": lost_gateway,
        "lost_processor": lost_processor,
        "unseen": unseen,
        "dup_leads": sum(len(ev.leads_of[k]) - 1 for k in dup_ids),
        "dup_causes": dict(dup_causes),
        "dup_contacts": _duplicate_contacts(sent, ev),
        "phantom_leads": sum(
            len(v)
            for k, v in ev.leads_of.items()
            if k not in sent.soak_ids and v and v[0]["webhook_id"] == t.id
        ),
        "unattributed_leads": ev.unattributed.get(t.id, 0),
        "repeats": sum(1 for i in leads if i.kind == "repeat"),
        "bad": len(bad),
        "bad_400": sum(1 for i in bad if i.final == "refused" and i.last_status == 400),
        "bad_accepted": sum(1 for i in bad if i.acked),
        "vendor_retries": len(retries),
        "retries_refused": sum(1 for i in retries if i.final == "refused"),
        "conflicts": len(conflicts),
        "conflicts_409": sum(1 for i in conflicts if i.last_status == 409),
        "answered_503": sum(
            1 for i in [*leads, *bad, *retries, *conflicts] for s in i.status_codes if s == 503
        ),
    }
    return columns, {"lost": lost_ids[:10], "dup_leads": dup_ids[:10]}


@dataclass
class Finished:
    """A webhook's finished requests as the database and each consumer saw them."""

    statuses: dict[str, str]  # request id -> status (the database)
    final_ids: set[str]  # finished in the database
    outcome_rids: set[str]  # with an outcome event
    archive_ids: set[str]  # with an archive record
    rejections_not_in_db: int  # requests the gateway refused that the database lacks

    @classmethod
    def of(cls, t: Target, sent: Sent, ev: Evidence) -> Finished:
        statuses = ev.db_status.get(t.id, {})
        gateway_rejections = {
            i.request_id
            for i in [*sent.bad, *sent.conflicts]
            if i.final == "refused" and i.request_id
        }
        return cls(
            statuses=statuses,
            final_ids={rid for rid, s in statuses.items() if s in FINAL},
            outcome_rids=set(ev.outcome_type.get(t.id, {})),
            archive_ids=ev.archived.get(t.id, set()),
            rejections_not_in_db=len(gateway_rejections - set(statuses)),
        )


def _consumers(
    t: Target, fin: Finished, ev: Evidence
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The database's finished requests vs outcomes, analytics and the archive; examples."""
    db_counts = Counter(
        "rejected" if s == "duplicate" else s for s in fin.statuses.values() if s in FINAL
    )
    a = ev.analytics.get(t.id, {})
    columns = {
        "db": dict(db_counts),
        "db_total": sum(db_counts.values()),
        "outcomes": dict(Counter(ev.outcome_type.get(t.id, {}).values())),
        "outcomes_missing": len(fin.final_ids - fin.outcome_rids),
        "outcomes_not_in_db": len(fin.outcome_rids - fin.final_ids),
        "rejections_not_in_db": fin.rejections_not_in_db,
        "analytics": {
            "processed": a.get("successful_requests"),
            "failed": a.get("failed_requests"),
            "rejected": a.get("rejected_requests"),
            "total": a.get("total_requests"),
        },
        "archive_expected": len(fin.final_ids),
        "archive_records": len(fin.archive_ids & fin.final_ids),
        "archive_missing": len(fin.final_ids - fin.archive_ids),
        "archive_extra": len(fin.archive_ids - fin.final_ids),
        "pointers_missing": len(fin.outcome_rids - ev.pointers),
    }
    examples = {
        "no_outcome": [
            f"{rid} ({fin.statuses[rid]})" for rid in sorted(fin.final_ids - fin.outcome_rids)[:10]
        ],
        "not_archived": sorted(fin.final_ids - fin.archive_ids)[:10],
    }
    return columns, examples


def _row(
    t: Target, sent: Sent, fin: Finished, ev: Evidence, gen: LoadGenerator, n: Notifications
) -> dict[str, Any]:
    delivery, delivery_examples = _delivery(t, sent, ev, gen)
    consumers, consumer_examples = _consumers(t, fin, ev)
    return {
        "webhook": t.name,
        "vendor": t.vendor,
        "auth": t.auth,
        "keyed": t.keyed,
        **delivery,
        **consumers,
        "email": _notification_row(n, t.id, "email"),
        "sms": _notification_row(n, t.id, "sms"),
        "examples": {
            "lost": delivery_examples["lost"],
            "no_outcome": consumer_examples["no_outcome"],
            "not_archived": consumer_examples["not_archived"],
            "dup_leads": delivery_examples["dup_leads"],
        },
    }


def _mismatch(counted: dict[str, Any], against: dict[str, int]) -> str:
    return ", ".join(
        f"{k} {counted[k]}/{against.get(k, 0)}"
        for k in ("processed", "failed", "rejected")
        if (counted[k] or 0) != against.get(k, 0)
    )


def _breaches(row: dict[str, Any], fin: Finished) -> list[tuple[str, object]]:
    """The promises a webhook's row breaks: (what, detail), in the report's order."""
    out: list[tuple[str, object]] = [(what, row[key]) for key, what in MUST_BE_ZERO if row[key]]
    out += [(f"DUPLICATE LEADS: {cause}", n) for cause, n in row["dup_causes"].items()]
    if row["outcomes_missing"]:
        out.append(
            (
                "requests finished in the database without an outcome event (so not counted, "
                "not archived, not notified)",
                row["outcomes_missing"],
            )
        )
    if row["outcomes_not_in_db"] or row["rejections_not_in_db"]:
        out.append(
            (
                "outcome events (gateway rejections) without a database row",
                max(row["outcomes_not_in_db"], row["rejections_not_in_db"]),
            )
        )
    # The consumers against what they consume (the outcome topic) ...
    if mismatch := _mismatch(row["analytics"], row["outcomes"]):
        out.append(("analytics != outcome topic", mismatch))
    missing, extra = fin.outcome_rids - fin.archive_ids, fin.archive_ids - fin.outcome_rids
    if missing or extra:
        out.append(("archive != outcome topic (missing/extra)", f"{len(missing)}/{len(extra)}"))
    if row["pointers_missing"]:
        out.append(("archive index rows missing", row["pointers_missing"]))
    # ... and against the database.
    if mismatch := _mismatch(row["analytics"], row["db"]):
        out.append(("analytics != database (analytics/db)", mismatch))
    if row["archive_missing"] or row["archive_extra"]:
        out.append(
            (
                "archive != database (missing/extra)",
                f"{row['archive_missing']}/{row['archive_extra']}",
            )
        )
    for channel in ("email", "sms"):
        for key in ("missing", "sent_twice", "sent_and_deadlettered"):
            if row[channel].get(key):
                out.append((f"{channel} notifications {key.replace('_', ' ')}", row[channel][key]))
    return out


def _contacts(acc: Account, ev: Evidence, gen: LoadGenerator, plans: list[WorkspacePlan]) -> None:
    """Per workspace: one contact per person with a lead."""
    for plan in plans:
        persons = {
            i.person.n
            for i in gen.items.values()
            if i.person is not None
            and i.target.workspace_id == plan.id
            and ev.leads_of.get(i.soak_id)
        }
        have = ev.contact_counts.get(plan.id, 0)
        acc.details[f"contacts_{plan.name}"] = {"contacts": have, "people_with_leads": len(persons)}
        if have != len(persons):
            acc.broken.append(f"{plan.name}: {have} contacts for {len(persons)} people")


def classify(
    ev: Evidence, gen: LoadGenerator, targets: list[Target], plans: list[WorkspacePlan]
) -> Account:
    acc = Account(details={"notification_sends": ev.sends})
    notifications = _notifications(ev, targets, plans)
    sent_to = _sent(gen)
    issues: dict[str, list[str]] = {}
    for t in targets:
        sent = sent_to.get(t.id) or Sent([], [], [], [], set())
        fin = Finished.of(t, sent, ev)
        row = _row(t, sent, fin, ev, gen, notifications)
        acc.rows.append(row)
        for what, detail in _breaches(row, fin):
            issues.setdefault(what, []).append(f"{t.name} {detail}")
    acc.broken += [f"{what}: {', '.join(where)}" for what, where in issues.items()]
    unexpected = [k for k in notifications.got if k not in notifications.expected]
    if unexpected:
        acc.broken.append(f"notifications for no expected event: {len(unexpected)}")
    _contacts(acc, ev, gen, plans)
    acc.details["unexpected_notifications"] = len(unexpected)
    acc.totals = {k: sum(r[k] for r in acc.rows) for k in TOTALS}
    return acc


async def account(
    stack: LaunchedStack,
    gen: LoadGenerator,
    targets: list[Target],
    plans: list[WorkspacePlan],
    smtp: SmtpSink,
    sms: SmsSink,
) -> Account:
    """Read what the system did, then count it per webhook."""
    return classify(await gather_evidence(stack, targets, plans, smtp, sms), gen, targets, plans)
