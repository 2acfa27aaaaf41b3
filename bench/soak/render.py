"""The soak's account as text: delivery per webhook, the consumers against the database, the
faults, and the promises broken (or that all held)."""

from __future__ import annotations

from typing import Any

from bench.soak.account import Account

DELIVERY_HEADERS = [
    "webhook",
    "sent",
    "acked",
    "delivered",
    "lost",
    "dup leads",
    "dup contacts",
    "unseen",
    "not acked",
    "indeterm.",
    "repeats",
    "retries",
    "conflicts",
    "bad->400",
    "bad acked",
    "503s",
]
CONSUMER_HEADERS = [
    "webhook",
    "db p/f/r",
    "outcomes miss",
    "analytics p/f/r",
    "archive have/exp",
    "email sent/dlq/exp",
    "email 2x|miss",
    "sms sent/dlq/exp",
    "sms 2x|miss",
]


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if i else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    return "\n".join([line(headers), *(line(r) for r in cells)])


def _delivery_row(r: dict[str, Any]) -> list[Any]:
    return [
        r["webhook"],
        r["sent"],
        r["acked"],
        r["delivered"],
        r["lost"],
        r["dup_leads"],
        r["dup_contacts"],
        r["unseen"],
        r["not_acked"],
        r["indeterminate"],
        r["repeats"],
        r["vendor_retries"],
        f"{r['conflicts_409']}/{r['conflicts']}",
        f"{r['bad_400']}/{r['bad']}",
        r["bad_accepted"],
        r["answered_503"],
    ]


def _delivery_total(t: dict[str, Any]) -> list[Any]:
    return [
        "TOTAL",
        t["sent"],
        t["acked"],
        t["delivered"],
        t["lost"],
        t["dup_leads"],
        t["dup_contacts"],
        t["unseen"],
        t["not_acked"],
        t["indeterminate"],
        "",
        t["vendor_retries"],
        t["conflicts"],
        f"{t['bad_400']}/{t['bad']}",
        t["bad_accepted"],
        t["answered_503"],
    ]


def _consumer_row(r: dict[str, Any]) -> list[Any]:
    db, an, em, sm = r["db"], r["analytics"], r["email"], r["sms"]
    return [
        r["webhook"],
        f"{db.get('processed', 0)}/{db.get('failed', 0)}/{db.get('rejected', 0)}",
        r["outcomes_missing"],
        f"{an['processed']}/{an['failed']}/{an['rejected']}",
        f"{r['archive_records']}/{r['archive_expected']}",
        f"{em.get('sent', 0)}/{em.get('deadlettered', 0)}/{em.get('expected', 0)}",
        f"{em.get('sent_twice', 0)}|{em.get('missing', 0)}",
        f"{sm.get('sent', 0)}/{sm.get('deadlettered', 0)}/{sm.get('expected', 0)}",
        f"{sm.get('sent_twice', 0)}|{sm.get('missing', 0)}",
    ]


def _fault_line(f: dict[str, Any]) -> str:
    line = f"  t={f['started_at']:5.0f} s  {f['name']:<28} {f['ended_at'] - f['started_at']:5.1f} s  {f['detail']}"
    return line + (f"  ERROR {f['error']}" if f["error"] else "")


def render(acc: Account, meta: dict[str, Any]) -> str:
    out = [
        f"\nleadwire soak: {meta['seconds']:.0f} s of load at {meta['rate']:g} leads/s, "
        f"stack {meta['stack']} ({meta.get('brokers', 1)} Kafka brokers), {meta['faults']} faults; lag drained: "
        f"{meta['drain'].get('drained')} after {meta['drain'].get('seconds')} s\n",
        "Delivery (leads with a unique id; acked = answered 2xx)",
        _table(
            DELIVERY_HEADERS,
            [*(_delivery_row(r) for r in acc.rows), _delivery_total(acc.totals)],
        ),
        "\nConsumers vs the database (db = finished requests: processed/failed/rejected)",
        _table(CONSUMER_HEADERS, [_consumer_row(r) for r in acc.rows]),
        "\nFaults",
        *(_fault_line(f) for f in meta["fault_records"]),
    ]
    if meta.get("gateway_windows"):
        out += [
            "\nThe gateway during the broker faults",
            *(f"  {w}" for w in meta["gateway_windows"]),
        ]
    if acc.broken:
        out.append("\nPROMISES BROKEN:")
        out += [f"  - {b}" for b in acc.broken]
    else:
        out.append(
            "\nAll promises held: lost 0, duplicates 0, unseen 0, every consumer matches the database."
        )
    return "\n".join(out)
