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

from bench.loadgen.generator import NO_EXTRAS, Attempt, Item, LoadGenerator, Mix
from bench.loadgen.vendors import VENDORS, Person, Target

__all__ = ["NO_EXTRAS", "VENDORS", "Attempt", "Item", "LoadGenerator", "Mix", "Person", "Target"]
