"""The vendors the load generator speaks as: a webhook to send to (:class:`Target`), the
people in the leads, each vendor's body shape and signature, the bad payloads, and which
bodies carry an idempotency key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


def _generic(p: Person, soak_id: str, email: str, phone: str, rng: random.Random) -> dict[str, Any]:
    return {
        "firstname": p.first,
        "lastname": p.last,
        "phone_number": phone,
        "email": email,
        "external_crm_id": p.crm_id,
        "product": p.product,
        "lead_status": p.status,
        "urgency": p.urgency,
        "soak_id": soak_id,
        "page": "/quote",
        "utm_source": rng.choice(("google", "facebook", "bing")),
    }


def _leadconduit(
    p: Person, soak_id: str, email: str, phone: str, _rng: random.Random
) -> dict[str, Any]:
    return {
        "lead": {"id": f"lc-{soak_id}"},
        "first_name": p.first,
        "last_name": p.last,
        "email": email,
        "phone_1": phone,
        "address_1": f"{100 + p.n % 900} N Lake Ave",
        "city": "Pasadena",
        "state": "CA",
        "postal_code": "91101",
        "product": p.product,
        "urgency": p.urgency,
        "soak_id": soak_id,
        "trustedform_cert_url": f"https://cert.trustedform.com/{hashlib.sha1(soak_id.encode()).hexdigest()}",
    }


def _zapier(p: Person, soak_id: str, email: str, phone: str, _rng: random.Random) -> dict[str, Any]:
    return {
        "first_name": p.first,
        "last_name": p.last,
        "email": email,
        "phone": phone,
        "product": p.product,
        "zip": "91101",
        "urgency": p.urgency,
        "soak_id": soak_id,
    }


def _facebook(
    p: Person, soak_id: str, email: str, phone: str, _rng: random.Random
) -> dict[str, Any]:
    return {
        "id": f"fb-{soak_id}",
        "created_time": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime()),
        "ad_id": "23850000000000001",
        "form_id": "987654321098765",
        "field_data": [
            {"name": "full_name", "values": [f"{p.first} {p.last}"]},
            {"name": "email", "values": [email]},
            {"name": "phone_number", "values": [phone]},
            {"name": "what_service_do_you_need?", "values": [p.product]},
        ],
        "urgency": p.urgency,
        "soak_id": soak_id,
    }


def _buyerlink(
    p: Person, soak_id: str, email: str, phone: str, _rng: random.Random
) -> dict[str, Any]:
    return {
        "lead_id": f"BL-{soak_id}",
        "crm_id": p.crm_id,
        "first_name": p.first,
        "last_name": p.last,
        "email": email,
        "phone": phone,
        "service": p.product,
        "zip": "91101",
        "urgency": p.urgency,
        "soak_id": soak_id,
    }


# Per vendor: its body for (person, soak id, email and phone as written this time, rng).
SHAPES: dict[str, Callable[[Person, str, str, str, random.Random], dict[str, Any]]] = {
    "generic": _generic,
    "leadconduit": _leadconduit,
    "zapier": _zapier,
    "facebook": _facebook,
    "buyerlink": _buyerlink,
}


def lead_payload(
    vendor: str, person: Person, soak_id: str, rng: random.Random, *, repeat: bool
) -> dict[str, Any]:
    """A realistic body for ``vendor`` carrying ``person`` and the soak id."""
    style = rng.randrange(5) if repeat else 0
    email = person.email.upper() if repeat and rng.random() < 0.5 else person.email
    phone = format_phone(person.phone, style)
    shape = SHAPES.get(vendor)
    if shape is None:
        raise ValueError(f"unknown vendor {vendor!r}")
    return shape(person, soak_id, email, phone, rng)


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
