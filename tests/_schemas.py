"""Check wire objects against the JSON Schema files in ``schemas/``.

Any test that produces something a client receives (an event from ``wire.event_to_wire``,
a snapshot from ``StateTracker.snapshot``) can call ``validate_wire(obj)``: the schema is
chosen by ``obj["type"]``, every file in ``schemas/`` is loaded into one
``referencing.Registry`` under its ``$id`` so relative ``$ref``s resolve offline, and a
mismatch raises ``AssertionError`` listing each violation with its JSON path.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
EVENT_SCHEMA_DIR = SCHEMA_DIR / "events"
COMMON = "common.schema.json"


def schema_files() -> list[Path]:
    """Every JSON Schema file: the shared definitions, one per event type, the snapshot."""
    return sorted(SCHEMA_DIR.rglob("*.schema.json"))


def message_files() -> list[Path]:
    """The files that describe one message type each (all but the shared definitions)."""
    return [path for path in schema_files() if path.name != COMMON]


@cache
def load_schema(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        schema: dict[str, Any] = json.load(f)
    return schema


@cache
def registry() -> Registry[Any]:
    resources = [
        (
            load_schema(path)["$id"],
            Resource.from_contents(load_schema(path), default_specification=DRAFT202012),
        )
        for path in schema_files()
    ]
    return Registry().with_resources(resources)  # no retrieve: never fetches over the net


def declared_type(path: Path) -> str:
    """The message type a schema file describes: its ``properties.type.const``."""
    type_ = load_schema(path).get("properties", {}).get("type", {}).get("const")
    if not isinstance(type_, str):
        raise AssertionError(f"{path.name} declares no message type (properties.type.const)")
    return type_


@cache
def _schemas_by_type() -> dict[str, dict[str, Any]]:
    return {declared_type(path): load_schema(path) for path in message_files()}


def schema_types() -> set[str]:
    """The message types that have a schema file (the ``type`` const of each)."""
    return set(_schemas_by_type())


def schema_for(type_: str) -> dict[str, Any]:
    try:
        return _schemas_by_type()[type_]
    except KeyError:
        raise AssertionError(f"no schema for message type {type_!r} in {SCHEMA_DIR}") from None


@cache
def _validator(type_: str) -> Draft202012Validator:
    return Draft202012Validator(
        schema_for(type_),
        registry=registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def _describe(error: ValidationError) -> str:
    # anyOf/oneOf failures (nullable enums, nullable times) hide the useful reason inside.
    if error.context:
        error = best_match(error.context)
    return f"  at {error.json_path}: {error.message}"


def validate_wire(obj: dict[str, Any]) -> None:
    """Raise ``AssertionError`` unless ``obj`` matches the schema of its ``type``."""
    type_ = obj.get("type")
    if not isinstance(type_, str):
        raise AssertionError(f"wire object has no string 'type': {obj!r}")
    errors = sorted(_validator(type_).iter_errors(obj), key=lambda e: e.json_path)
    if errors:
        lines = "\n".join(_describe(error) for error in errors)
        raise AssertionError(
            f"{type_} (seq {obj.get('seq')}) does not match "
            f"{schema_for(type_)['$id']}:\n{lines}\nobject: {json.dumps(obj, default=str)}"
        )
