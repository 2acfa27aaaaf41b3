"""Field mapping: turn a vendor's body into a :class:`~shared.events.MappedLead`.

A mapping is an ordered list of entries ``{source, target, transform, value?, format?}``:

- ``source`` is a path into the body: ``a.b.c`` walks objects, a number walks a list
  (``items.0.email``), ``[key=value]`` picks the first list element whose ``key`` equals
  ``value`` (``field_data[name=email].values.0``, Facebook's shape), ``\\.`` is a literal
  dot. A body key equal to the whole source string always wins (form fields such as
  ``lead[email]`` or ``contact.email`` as one flat key work as written).
- ``target`` is a lead field (:data:`LEAD_FIELDS`) or ``custom.<name>``; ``split_name``
  writes ``first_name`` and ``last_name`` (its target is ``name`` or either of them).
- ``transform`` is one of :data:`TRANSFORMS`.

Entries apply in order and the first entry that yields a value for a target wins, so a
later entry is a fallback (``phone_1`` then ``phone_2``). Body fields no entry consumed
are kept in ``custom`` (never dropped). Then the lead is validated: phone or email is
required, phones become E.164 (the workspace's region reads national numbers), emails are
checked (no DNS) and lowercased, lengths and types are bounded.

Everything here is pure and on the gateway's hot path: :func:`compile_mapping` does the
parsing once (the gateway caches the result per webhook) and :func:`map_and_validate`
only walks precompiled paths. It never raises on bad input: problems become
:class:`~shared.events.FieldError` items whose messages never echo the value (no PII).
A bug, on the other hand, does raise: a 500 makes the vendor retry, a 400 would lose the lead.

The modules, in the order a body meets them:

- ``spec``: the mapping format (entries, reading JSON/YAML/stored mappings with the entry
  and line of each problem, compiling);
- ``paths``: source paths, parsed once and resolved against a body;
- ``transforms``: what an entry does to its value; ``normalize``: phones and emails;
- ``apply``: :func:`map_and_validate`; ``unmapped``: what no entry consumed;
  ``validate``: the checks of the mapped lead;
- ``forms``: form bodies as dicts; ``limits``: the bounds; ``controls``: control
  characters (which ones, taking them out).
"""

from __future__ import annotations

from shared.mapping.apply import map_and_validate
from shared.mapping.controls import IDENTITY_FIELDS, escape_controls, has_control, strip_controls
from shared.mapping.forms import FormError, parse_form
from shared.mapping.limits import (
    MAX_CUSTOM_DEPTH,
    MAX_CUSTOM_FIELDS,
    MAX_CUSTOM_KEY_LENGTH,
    MAX_CUSTOM_STRING,
    MAX_ENTRIES,
    MAX_FIELD_LENGTH,
    MAX_FORM_FIELDS,
    MAX_PATH_LENGTH,
    MAX_PHONE_INPUT,
)
from shared.mapping.normalize import normalize_email, normalize_phone
from shared.mapping.paths import MISSING, CompiledPath, compile_path, resolve, resolve_path
from shared.mapping.spec import (
    CUSTOM_PREFIX,
    LEAD_FIELDS,
    CompiledMapping,
    Mapping,
    MappingEntry,
    MappingError,
    compile_mapping,
    compile_stored,
    load_mapping_file,
    load_mapping_text,
    parse_mapping,
)
from shared.mapping.transforms import TRANSFORMS, describe_transforms

__all__ = [
    "CUSTOM_PREFIX",
    "IDENTITY_FIELDS",
    "LEAD_FIELDS",
    "MAX_CUSTOM_DEPTH",
    "MAX_CUSTOM_FIELDS",
    "MAX_CUSTOM_KEY_LENGTH",
    "MAX_CUSTOM_STRING",
    "MAX_ENTRIES",
    "MAX_FIELD_LENGTH",
    "MAX_FORM_FIELDS",
    "MAX_PATH_LENGTH",
    "MAX_PHONE_INPUT",
    "MISSING",
    "TRANSFORMS",
    "CompiledMapping",
    "CompiledPath",
    "FormError",
    "Mapping",
    "MappingEntry",
    "MappingError",
    "compile_mapping",
    "compile_path",
    "compile_stored",
    "describe_transforms",
    "escape_controls",
    "has_control",
    "load_mapping_file",
    "load_mapping_text",
    "map_and_validate",
    "normalize_email",
    "normalize_phone",
    "parse_form",
    "parse_mapping",
    "resolve",
    "resolve_path",
    "strip_controls",
]
