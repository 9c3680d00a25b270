"""What a REST request carries, read strictly: its route, its JSON body, its query.

Every refusal is an ``ApiError`` (HTTP status, stable ``code``, one-line message) that names
exactly what is wrong: the field, what was expected, what came (``field 'device': expected
string, got number``), the JSON syntax error and where, the unknown field. Nothing here
knows about switches or tokens; ``ctilink.screenpop.api`` uses it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from twisted.web.server import Request

DIALABLE = re.compile(r"^\+?[0-9*#]{1,32}$")
NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,80}$")  # devices, agents, queues, switches
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")  # call data names
TEXT = re.compile(r"^[^\x00-\x1f\x7f]{0,80}$")  # reasons, names, call data values
MAX_DATA = 20
_RULES = {
    DIALABLE: "digits, * and #, optionally a leading +, at most 32",
    NAME: "letters, digits and _ . @ + -, at most 80",
    VARIABLE: "a letter or _, then letters, digits or _, at most 64",
    TEXT: "at most 80 characters, no control characters",
}
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


class ApiError(Exception):
    """A request refused before or instead of reaching a switch."""

    def __init__(self, status: int, code: str, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid", message)


def json_type(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "number"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def rule(pattern: re.Pattern[str]) -> str:
    return _RULES.get(pattern, f"must match {pattern.pattern}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # "/calls/{call_id}/hold"
    handler: str  # the name of the method that serves it

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        parts = self.path.strip("/").split("/")
        if len(parts) != len(segments):
            return None
        params = {}
        for part, segment in zip(parts, segments, strict=True):
            if part.startswith("{"):
                params[part[1:-1]] = segment
            elif part != segment:
                return None
        return params


def find_route(
    routes: Sequence[Route], method: str, request: Request
) -> tuple[Route, dict[str, str]]:
    """The route for the request's method and path below the resource; 404 or 405."""
    segments = [unquote(p.decode("ascii", "replace")) for p in request.postpath or []]
    while segments and segments[-1] == "":
        segments.pop()
    allowed = []
    for route in routes:
        params = route.match(segments)
        if params is not None:
            if route.method == method:
                return route, params
            allowed.append(route.method)
    if allowed:
        methods = ", ".join(allowed)
        raise ApiError(405, "method_not_allowed", f"use {methods}", Allow=methods)
    raise ApiError(404, "not_found", "no such API resource")


class Fields:
    """A JSON object (a body, or the query's parameters), read field by field."""

    def __init__(self, fields: Mapping[str, Any], where: str = "field") -> None:
        self.fields = dict(fields)
        self.where = where
        self._read: set[str] = set()

    def _get(self, name: str, kind: type, required: bool) -> Any:
        self._read.add(name)
        value = self.fields.get(name)
        if value is None:
            if required:
                raise invalid(f"{self.where} '{name}' is required")
            return None
        if not isinstance(value, kind):
            expected = _JSON_TYPES[kind]
            raise invalid(f"{self.where} '{name}': expected {expected}, got {json_type(value)}")
        return value

    def optional(self, name: str, pattern: re.Pattern[str] = NAME) -> str | None:
        value: str | None = self._get(name, str, False)
        if value is not None and not pattern.match(value):
            raise invalid(f"{self.where} '{name}': {value[:100]!r} is not valid ({rule(pattern)})")
        return value

    def text(self, name: str, pattern: re.Pattern[str] = NAME) -> str:
        self._get(name, str, True)
        value = self.optional(name, pattern)
        assert value is not None
        return value

    def data(self, name: str) -> dict[str, str]:
        """Call data: at most ``MAX_DATA`` names (``VARIABLE``) with ``TEXT`` values."""
        value: dict[str, Any] = self._get(name, dict, False) or {}
        if len(value) > MAX_DATA:
            raise invalid(f"{self.where} '{name}': at most {MAX_DATA} entries")
        for key, item in value.items():
            if not VARIABLE.match(key):
                raise invalid(f"{self.where} '{name}': name {key[:100]!r} is not valid"
                              f" ({rule(VARIABLE)})")  # fmt: skip
            if not isinstance(item, str) or not TEXT.match(item):
                raise invalid(f"{self.where} '{name}.{key}': expected a string ({rule(TEXT)})")
        return value

    def time(self, name: str) -> float | None:
        """An RFC 3339 time with its zone (``2026-11-22T14:00:00Z``) as POSIX seconds."""
        value: str | None = self._get(name, str, False)
        if value is None:
            return None
        try:
            stamp: datetime | None = datetime.fromisoformat(value)
        except ValueError:
            stamp = None
        if stamp is None or stamp.tzinfo is None:
            raise invalid(f"{self.where} '{name}': expected an RFC 3339 time with a zone"
                          f" (2026-11-22T14:00:00Z), got {value[:100]!r}")  # fmt: skip
        return stamp.timestamp()

    def done(self) -> None:
        """Refuse what no handler read: a misspelt field must not be silently ignored."""
        unknown = sorted(set(self.fields) - self._read)
        if unknown:
            raise invalid(f"unknown {self.where}(s): {', '.join(map(repr, unknown))}")


def read_body(request: Request, max_body: int) -> Fields:
    """The request's JSON object body (empty: no fields); 413, 415 or 400 otherwise."""
    length = request.getHeader(b"content-length")
    if length is not None and length.isdigit() and int(length) > max_body:
        raise ApiError(413, "too_large", f"the body is over {max_body} bytes")
    raw = request.content.read(max_body + 1) if request.content is not None else b""
    if len(raw) > max_body:
        raise ApiError(413, "too_large", f"the body is over {max_body} bytes")
    if not raw.strip():
        return Fields({})
    kind = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if kind != b"application/json" and not kind.endswith(b"+json"):
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise invalid("the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise invalid(f"malformed JSON: {exc.msg} at {where}") from None
    if not isinstance(value, dict):
        raise invalid(f"the body must be a JSON object, got {json_type(value)}")
    return Fields(value)


def _no_constant(name: str) -> Any:
    raise invalid(f"malformed JSON: {name} is not a JSON number")


def read_query(request: Request) -> Fields:
    """The query's parameters, each at most once."""
    fields: dict[str, Any] = {}
    for key, values in (request.args or {}).items():
        name = key.decode("utf-8", "replace")
        if len(values) != 1:
            raise invalid(f"parameter {name!r} is given {len(values)} times")
        fields[name] = values[0].decode("utf-8", "replace")
    return Fields(fields, "parameter")
