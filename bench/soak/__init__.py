"""``make soak``: the whole system under load and faults, and a Jepsen-style account.

    python -m bench.soak [--seconds 300] [--rate 25] [--stack soak] [--drain-seconds 300]

1. Starts a named stack (``LEADWIRE_STACK=soak``: its own Kafka, Postgres and S3, its own
   service ports) with the project's launcher (``python -m infra.launch up``), a second
   processor replica, a local SMTP server (aiosmtpd) and a local Twilio-compatible SMS
   provider (aiohttp) that the notifier is pointed at through ``LEADWIRE_SMTP_*`` /
   ``LEADWIRE_SMS_*``.
2. Configures two workspaces with the CLI: five webhooks (generic signed with Standard
   Webhooks, LeadConduit and Zapier unsigned, Facebook signed GitHub-style, BuyerLink
   signed), a board rule, an email rule for every lead and a high-priority SMS rule.
3. Sends leads at a bounded rate (:mod:`bench.loadgen`: unique ids, the same person again,
   vendor retries, key conflicts, bad payloads) while a fault schedule kills (``kill -9``)
   and restarts every service in turn (both processors at once), restarts the Kafka broker
   and Postgres, and stops S3, the SMTP server and the SMS provider for a while.
4. Waits (bounded) for every consumer group's lag and the notifier's queue to drain, then
   counts per webhook: sent, acknowledged, lost, duplicate leads and contacts, unseen,
   notifications sent vs expected, archive objects vs expected, analytics vs the database.
   Exit status 1 if any promise broke.
5. Stops everything it started (``python -m infra.launch down``), also on failure or Ctrl-C.

Every request and its answer goes to ``.leadwire/<stack>/soak/requests.jsonl``; the account
to ``report.json`` next to it; service logs stay in ``.leadwire/<stack>/logs/``.
"""

# The modules, in the order a run uses them: workspaces (configuration through the CLI),
# faults (the schedule), readings (lags, topics, the drain), evidence (what the system did),
# account (the classification, no I/O), render (the text), run (one soak), __main__ (the
# command). The stack, the sinks and the load generator are bench-wide: bench.stack,
# bench.sinks, bench.loadgen.
from bench.soak.run import SoakResult, run_soak

__all__ = ["SoakResult", "run_soak"]
