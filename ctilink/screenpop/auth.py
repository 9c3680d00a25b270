"""Bearer tokens: who may connect to the event socket (and later the command API), and what
they may see.

Theory of operation
-------------------
The operator issues tokens with ``new_token()`` (``ctilink token new``): a high-entropy
random string (``ctl_`` + 32 random bytes, URL-safe base64) given once to the CRM
integrator, and a ``Token`` record that keeps only its SHA-256 digest. A random 256-bit
secret needs no slow password hash: the digest cannot be turned back into the token, and
``TokenStore.authenticate`` hashes what a client presents and compares digests with
``hmac.compare_digest``. A token is never logged, never stored, never echoed: logs name a
token by its ``id``.

Each token carries:

* ``tenant``: the only tenant whose events it sees (a switch belongs to one tenant);
* ``scope``: ``read`` (the event socket) or ``control`` (read and, later, call control);
* optional ``agents`` / ``queues`` / ``devices`` lists limiting it within its tenant
  (absent: the whole tenant; present: what any of the given lists reaches, see
  ``ctilink.screenpop.filters``);
* an optional ``expires`` time (POSIX seconds).

A ``TokenStore`` is immutable; a reload builds a new one and hands it to the event socket
(``EventSocket.replace_tokens``), which keeps every client whose token is still there and
valid and closes the others (4401). Tokens are matched across stores by digest.

The token file (``[event_socket] tokens_file``, read again on SIGHUP) is
TOML, one ``[[token]]`` table per token; ``Token.to_toml()`` writes one::

    [[token]]
    id = "crm-acme"                 # shown in logs; unique
    tenant = "acme"                 # the [[switch]] tenant whose events it sees
    scope = "read"                  # or "control"
    sha256 = "9f86d081884c7d65..."  # digest of the token; the token itself is never stored
    agents = ["6001", "6002"]       # optional limits within the tenant
    queues = ["support"]
    devices = ["6001"]
    expires = 2027-01-31T00:00:00Z  # optional; a TOML offset date-time

Clients present a token as ``Authorization: Bearer <token>`` or, since browsers cannot set
headers on a WebSocket, as the ``access_token`` query parameter (RFC 6750, 2.1 and 2.3).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from ctilink.errors import ConfigError

TOKEN_PREFIX = "ctl_"
TOKEN_BYTES = 32
_DIGEST = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")
_LIMITS = ("agents", "queues", "devices")
_KEYS = frozenset({"id", "tenant", "scope", "sha256", "expires", *_LIMITS})


class Scope(StrEnum):
    READ = "read"
    CONTROL = "control"

    def covers(self, needed: Scope) -> bool:
        """``control`` implies ``read``."""
        return self is Scope.CONTROL or needed is Scope.READ


class AuthError(Exception):
    """A request refused: ``status`` is the HTTP status (400, 401, 403), ``code`` a stable
    machine-readable reason, the message one line for the client (never the token)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def unauthorized(message: str, code: str = "unauthorized") -> AuthError:
    return AuthError(401, code, message)


def forbidden(message: str) -> AuthError:
    return AuthError(403, "forbidden", message)


def bad_request(message: str) -> AuthError:
    return AuthError(400, "bad_request", message)


def hash_token(secret: str) -> str:
    """The hex SHA-256 digest a ``Token`` keeps of ``secret``."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Token:
    """What a token grants. ``digest`` is ``hash_token(secret)``; the secret is not kept."""

    id: str
    tenant: str
    scope: Scope
    digest: str
    agents: frozenset[str] | None = None
    queues: frozenset[str] | None = None
    devices: frozenset[str] | None = None
    expires: float | None = None

    def __repr__(self) -> str:  # the digest is not secret, but it is noise in logs
        return f"Token(id={self.id!r}, tenant={self.tenant!r}, scope={self.scope.value!r})"

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    @property
    def limited(self) -> bool:
        """True when agents, queues or devices restrict it within its tenant."""
        return not (self.agents is None and self.queues is None and self.devices is None)

    def allows(self, scope: Scope) -> bool:
        return self.scope.covers(scope)

    # The command API's ``Principal`` (ctilink.screenpop.api): the API checks the tenant of
    # ``switch`` itself; a limited token reaches what names one of its agents, queues or
    # devices, and nothing switch-wide.
    def can_read(
        self,
        switch: str,
        *,
        device: str | None = None,
        agent: str | None = None,
        queue: str | None = None,
    ) -> bool:
        if not self.limited:
            return True
        return any(
            name is not None and allowed is not None and name in allowed
            for name, allowed in ((device, self.devices), (agent, self.agents),
                                  (queue, self.queues))
        )  # fmt: skip

    def can_control(
        self,
        switch: str,
        *,
        device: str | None = None,
        agent: str | None = None,
        queue: str | None = None,
    ) -> bool:
        return self.allows(Scope.CONTROL) and self.can_read(
            switch, device=device, agent=agent, queue=queue
        )

    def to_toml(self) -> str:
        """The ``[[token]]`` table of the token file for this token."""
        lines = [
            "[[token]]",
            f"id = {_toml_str(self.id)}",
            f"tenant = {_toml_str(self.tenant)}",
            f"scope = {_toml_str(self.scope.value)}",
            f"sha256 = {_toml_str(self.digest)}",
        ]
        for name in _LIMITS:
            values = getattr(self, name)
            if values is not None:
                lines.append(f"{name} = [{', '.join(_toml_str(v) for v in sorted(values))}]")
        if self.expires is not None:
            stamp = datetime.fromtimestamp(self.expires, UTC).isoformat(timespec="seconds")
            lines.append(f"expires = {stamp.replace('+00:00', 'Z')}")
        return "\n".join(lines) + "\n"


def _toml_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def new_token(
    id: str,
    tenant: str,
    scope: Scope | str = Scope.READ,
    *,
    agents: Iterable[str] | None = None,
    queues: Iterable[str] | None = None,
    devices: Iterable[str] | None = None,
    expires: float | None = None,
) -> tuple[str, Token]:
    """A fresh secret (give it to the client, once) and the ``Token`` to store."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    entry: dict[str, Any] = {"id": id, "tenant": tenant, "scope": str(scope)}
    entry["sha256"] = hash_token(secret)
    for name, values in (("agents", agents), ("queues", queues), ("devices", devices)):
        if values is not None:
            entry[name] = list(values)
    if expires is not None:
        entry["expires"] = expires
    return secret, _parse_entry(entry, "new token")


class TokenStore:
    """The tokens in force. Immutable: a reload makes a new store."""

    def __init__(self, tokens: Iterable[Token] = ()) -> None:
        self._by_digest: dict[str, Token] = {}
        ids: set[str] = set()
        for token in tokens:
            if token.id in ids:
                raise ValueError(f"token id {token.id!r} appears twice")
            if token.digest in self._by_digest:
                raise ValueError(f"tokens {self._by_digest[token.digest].id!r} and "
                                 f"{token.id!r} have the same digest")  # fmt: skip
            ids.add(token.id)
            self._by_digest[token.digest] = token

    def __len__(self) -> int:
        return len(self._by_digest)

    def __iter__(self) -> Iterator[Token]:
        return iter(self._by_digest.values())

    def get(self, digest: str) -> Token | None:
        """The token with this digest (how a reload finds a connected client's token)."""
        return self._by_digest.get(digest)

    def authenticate(self, secret: str | None, now: float) -> Token:
        """The token ``secret`` is, or ``AuthError`` 401 (missing, unknown, expired)."""
        if not secret:
            raise unauthorized("a token is required (Authorization: Bearer or access_token)")
        digest = hash_token(secret)
        token = self._by_digest.get(digest)
        # The dict lookup is on a digest of a 256-bit random secret, which leaks nothing
        # useful; compare_digest is the documented constant-time check all the same.
        if token is None or not hmac.compare_digest(token.digest, digest):
            raise unauthorized("unknown token")
        if token.expired(now):
            raise unauthorized("token expired", code="token_expired")
        return token

    @classmethod
    def from_entries(cls, entries: Sequence[Mapping[str, Any]], source: str) -> TokenStore:
        """Tokens from ``[[token]]`` tables; ``ConfigError`` naming ``source`` and the key."""
        tokens = [
            _parse_entry(entry, f"{source}: token {i + 1}") for i, entry in enumerate(entries)
        ]
        try:
            return cls(tokens)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: Path) -> TokenStore:
        """Read a token file (see the module docstring); ``ConfigError`` if it is bad."""
        try:
            with path.open("rb") as f:
                document = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the token file ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        unknown = set(document) - {"token"}
        if unknown:
            raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r} (expected [[token]])")
        entries = document.get("token", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigError(f"{path}: 'token' must be an array of tables ([[token]])")
        return cls.from_entries(entries, str(path))


def _parse_entry(entry: Mapping[str, Any], where: str) -> Token:
    unknown = set(entry) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    id_ = _string(entry, "id", where)
    if not _ID.fullmatch(id_):
        raise ConfigError(f"{where}: 'id' must be 1-64 letters, digits or ._:@- characters")
    where = f"{where} ({id_})"
    tenant = _string(entry, "tenant", where)
    try:
        scope = Scope(entry.get("scope", "read"))
    except ValueError:
        raise ConfigError(f'{where}: \'scope\' must be "read" or "control"') from None
    digest = _string(entry, "sha256", where).lower()
    if not _DIGEST.fullmatch(digest):
        raise ConfigError(f"{where}: 'sha256' must be 64 hex digits (the token's SHA-256)")
    limits: dict[str, frozenset[str] | None] = {}
    for name in _LIMITS:
        values = entry.get(name)
        if values is not None and not (
            isinstance(values, list) and values and all(isinstance(v, str) and v for v in values)
        ):
            raise ConfigError(f"{where}: {name!r} must be a non-empty list of names")
        limits[name] = None if values is None else frozenset(values)
    return Token(
        id_, tenant, scope, digest, **limits, expires=_expires(entry.get("expires"), where)
    )


def _string(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key!r} is required (a non-empty string)")
    return value


def _expires(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.timestamp()
    raise ConfigError(
        f"{where}: 'expires' must be a date-time with an offset (2027-01-31T00:00:00Z)"
    )


class Clock(Protocol):
    def seconds(self) -> float: ...


class Authenticator:
    """``authenticate(secret) -> Token`` against the store in force (the command API's
    ``Authenticator``); replace ``store`` on reload. Raises ``AuthError`` (401)."""

    def __init__(self, store: TokenStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def authenticate(self, secret: str) -> Token:
        return self.store.authenticate(secret, self.clock.seconds())


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value; None if it is not
    one."""
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def presented_secret(headers: Mapping[str, str], params: Mapping[str, Sequence[str]]) -> str | None:
    """The token a WebSocket handshake carries: ``Authorization: Bearer`` or
    ``?access_token=``. Both at once must agree; a malformed header is a 400."""
    from_query = params.get("access_token", [])
    if len(from_query) > 1:
        raise bad_request("access_token given more than once")
    from_header = None
    authorization = headers.get("authorization")
    if authorization is not None:
        from_header = bearer_token(authorization)
        if from_header is None:
            raise unauthorized("Authorization must be 'Bearer <token>'")
    if from_query and from_header is not None and from_query[0] != from_header:
        raise bad_request("two different tokens (header and access_token)")
    return from_header if from_header is not None else (from_query[0] if from_query else None)
