"""Check a published message against its channel's JSON Schema (draft 2020-12, p9cli/schemas/)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

from p9cli.publish.channels import (
    FUSION_DATA,
    MARKET_CONTEXT,
    PRECISION9_CONTEXT,
    STATUS,
    STRUCTURE,
    WORKER_STATUS,
    kind_of,
)

_BASE = "https://p9.invalid/schemas/"
SCHEMA_FILES = {
    MARKET_CONTEXT: "market_context.schema.json",
    FUSION_DATA: "fusion_data.schema.json",
    PRECISION9_CONTEXT: "precision9_context.schema.json",
    STRUCTURE: "structure_message.schema.json",
    STATUS: "precision9_fusion_status.schema.json",
    WORKER_STATUS: "precision9_fusion_status.schema.json#/$defs/worker_status",
}


class SchemaViolation(ValueError):
    """A message that does not match its channel's schema (message names the channel and the path)."""


@cache
def _registry() -> Registry:
    reg: Registry = Registry()
    for f in resources.files("p9cli.schemas").iterdir():
        if f.name.endswith(".schema.json"):
            doc = json.loads(f.read_text(encoding="utf-8"))
            reg = reg.with_resource(doc.get("$id", _BASE + f.name), Resource.from_contents(doc))
    return reg


@cache
def validator_for(kind: str) -> Draft202012Validator:
    """The validator of one channel kind (see ``SCHEMA_FILES``)."""
    ref = _BASE + SCHEMA_FILES[kind]
    return Draft202012Validator({"$ref": ref}, registry=_registry())


def validate_message(channel: str, message: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Decode (if needed) and validate one message of ``channel``; returns the decoded payload.

    Raises :class:`SchemaViolation` naming the channel, the failing path and the reason.
    """
    payload = orjson.loads(message) if isinstance(message, bytes | str) else message
    # best_match descends into oneOf/anyOf alternatives, so a bad field inside a nullable object is
    # named by its own path ("book/update_id") rather than as "book: not valid under any schema"
    err = best_match(validator_for(kind_of(channel)).iter_errors(payload))
    if err is not None:
        path = "/".join(str(p) for p in err.absolute_path) or "(top)"
        raise SchemaViolation(f"{channel}: {path}: {err.message[:300]}")
    return payload
