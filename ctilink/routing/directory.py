"""Who is calling: customer lookups by account number and caller number, with a cache.

Theory of operation
-------------------
A caller is looked up by ``CallerKey``: the tenant, the account number the caller typed
into the IVR (if any) and the caller's number in E.164 (if any). The account wins: a
customer found by account is the caller even when the number is someone else's (a
customer calling from a colleague's phone). A number shared by several customers (a
household, a switchboard) gives the one with the lowest id.

One statement finds the customer: a UNION ALL of the account and the number index
lookups, joined to ``customers``, with the customer's accounts and most recent
interactions (``history`` of them, a JSON array built by the database) in correlated
subqueries. The interactions give the routing service the last agent and the screen pop
the contact history. A caller costs one round trip, known or not.

Results, unknown callers included, are kept in an LRU cache (``cache_size`` entries, each
for ``ttl`` seconds by the injected clock), per identifier: a customer found is filed
under each of their account numbers (and the number that found them), a miss under the
identifiers that found nothing. ``peek`` reads it synchronously, which is how a screen pop
following a routing decision (keyed by the IVR account, while the route request was looked
up by number, or the reverse) is published in the same reactor turn as the event that
asked for it. Entries go away early when:

* ``invalidate_customer(id)`` is called (the interaction recorder does it when it stores
  a call of that customer, so the last agent is fresh);
* ``clear()`` is called: the routing runtime does it when ``directory_revision`` changes,
  i.e. when an import or admin function (any process) changed the directory.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ctilink.routing import schema as t


class CallerKey(NamedTuple):
    tenant: str
    account: str | None  # as typed into the IVR
    number: str | None  # E.164


@dataclass(frozen=True, slots=True)
class Customer:
    id: int
    tenant: str
    account: str
    accounts: tuple[str, ...]
    name: str
    tier: str | None
    language: str | None
    preferred_agent: str | None
    notes: str | None


@dataclass(frozen=True, slots=True)
class PastInteraction:
    call_id: str
    started: float
    answered: float | None
    ended: float
    queue: str | None
    agent: str | None
    outcome: str


@dataclass(frozen=True, slots=True)
class Caller:
    """What the directory knows about one caller (``customer`` None: unknown caller)."""

    key: CallerKey
    customer: Customer | None
    identified_by: str | None  # "account" or "number"
    history: tuple[PastInteraction, ...] = ()


_EntryKey = tuple[str, str, str]  # ("a" or "n", tenant, account or number)
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class _Found:
    customer: Customer
    history: tuple[PastInteraction, ...]


def _aggregate(dialect: str, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    if dialect == "postgresql":
        return sa.func.string_agg(column, sa.literal_column("';'"))
    return sa.func.group_concat(column, ";")


def _tenant_id() -> sa.ScalarSelect[Any]:
    query = sa.select(t.tenants.c.id).where(t.tenants.c.name == sa.bindparam("tenant"))
    return query.scalar_subquery()


_HISTORY = ("call_id", "started", "answered", "ended", "queue", "agent", "outcome")


def _history(dialect: str, limit: int) -> sa.ScalarSelect[Any]:
    """The customer's ``limit`` most recent interactions as a JSON array of arrays, read in
    the same statement as the customer (one round trip per caller)."""
    i = t.interactions.c
    recent = (
        sa.select(*(i[name] for name in _HISTORY))
        .where(i.customer_id == t.customers.c.id)
        .order_by(i.started.desc())
        .limit(limit)
        .correlate(t.customers)
        .subquery("recent")
    )
    if dialect == "postgresql":
        aggregate = sa.func.json_agg(sa.func.json_build_array(*recent.c))
    else:
        aggregate = sa.func.json_group_array(sa.func.json_array(*recent.c))
    return sa.select(aggregate).select_from(recent).scalar_subquery()


def _identify_query(
    dialect: str, by_account: bool, by_number: bool, history: int
) -> sa.Select[Any]:
    branches: list[sa.Select[Any]] = []
    if by_account:
        branches.append(
            sa.select(t.customer_accounts.c.customer_id, sa.literal(0).label("via")).where(
                t.customer_accounts.c.tenant_id == _tenant_id(),
                t.customer_accounts.c.account == sa.bindparam("account"),
            )
        )
    if by_number:
        branches.append(
            sa.select(t.customer_phones.c.customer_id, sa.literal(1).label("via")).where(
                t.customer_phones.c.tenant_id == _tenant_id(),
                t.customer_phones.c.e164 == sa.bindparam("number"),
            )
        )
    matches = (branches[0] if len(branches) == 1 else sa.union_all(*branches)).subquery()
    c = t.customers.c
    accounts = (
        sa.select(_aggregate(dialect, t.customer_accounts.c.account))
        .where(t.customer_accounts.c.customer_id == c.id)
        .scalar_subquery()
    )
    return (
        sa.select(
            c.id,
            c.account,
            c.name,
            c.tier,
            c.language,
            c.preferred_agent,
            c.notes,
            accounts.label("accounts"),
            (_history(dialect, history) if history else sa.null()).label("history"),
            matches.c.via,
        )
        .join_from(t.customers, matches, c.id == matches.c.customer_id)
        .order_by(matches.c.via, c.id)
        .limit(1)
    )


class CustomerDirectory:
    """Caller lookups (see the module docstring); ``clock`` is a ``seconds()`` function."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        now: Callable[[], float],
        cache_size: int = 10_000,
        ttl: float = 60.0,
        history: int = 10,
    ) -> None:
        self._engine = engine
        self._now = now
        self.cache_size = cache_size
        self.ttl = ttl
        self.history = history
        self._cache: OrderedDict[_EntryKey, tuple[float, _Found | None]] = OrderedDict()
        self._by_customer: dict[int, set[_EntryKey]] = {}
        dialect = engine.dialect.name
        self._queries = {
            (a, n): _identify_query(dialect, a, n, history)
            for a in (False, True)
            for n in (False, True)
            if a or n
        }
        self.hits = 0
        self.misses = 0

    # -- the cache ---------------------------------------------------------------------------
    # Entries are per identifier, not per CallerKey: ("a", tenant, account) and ("n", tenant,
    # number), each mapping to a _Found (the customer and its history) or to None (known to
    # match nobody). A found customer is filed under every account number it has, so a pop
    # keyed by the IVR account hits what the route request looked up by number.
    def peek(self, key: CallerKey) -> Caller | None:
        """The cached answer for ``key``, or None (not cached, or expired)."""
        if key.account:
            found = self._get(("a", key.tenant, key.account))
            if found is _MISSING:
                return None
            if isinstance(found, _Found):
                return Caller(key, found.customer, "account", found.history)
        if key.number:
            found = self._get(("n", key.tenant, key.number))
            if found is _MISSING:
                return None
            if isinstance(found, _Found):
                return Caller(key, found.customer, "number", found.history)
        return Caller(key, None, None)

    def _get(self, entry_key: _EntryKey) -> Any:  # _Found, None (no match) or _MISSING
        entry = self._cache.get(entry_key)
        if entry is None:
            return _MISSING
        stored, found = entry
        if self._now() - stored > self.ttl:
            self._forget(entry_key)
            return _MISSING
        self._cache.move_to_end(entry_key)
        return found

    def remember(self, caller: Caller) -> None:
        key, customer = caller.key, caller.customer
        if customer is None:
            if key.account:
                self._put(("a", key.tenant, key.account), None)
            if key.number:
                self._put(("n", key.tenant, key.number), None)
            return
        found = _Found(customer, caller.history)
        for account in customer.accounts:
            self._put(("a", key.tenant, account), found)
        if caller.identified_by == "number":
            if key.account:
                self._put(("a", key.tenant, key.account), None)
            if key.number:
                self._put(("n", key.tenant, key.number), found)

    def _put(self, entry_key: _EntryKey, found: _Found | None) -> None:
        if entry_key in self._cache:
            self._forget(entry_key)
        if self.cache_size <= 0:
            return
        self._cache[entry_key] = (self._now(), found)
        if found is not None:
            self._by_customer.setdefault(found.customer.id, set()).add(entry_key)
        while len(self._cache) > self.cache_size:
            self._forget(next(iter(self._cache)))

    def _forget(self, entry_key: _EntryKey) -> None:
        _, found = self._cache.pop(entry_key)
        if found is not None:
            keys = self._by_customer.get(found.customer.id)
            if keys is not None:
                keys.discard(entry_key)
                if not keys:
                    del self._by_customer[found.customer.id]

    def invalidate_customer(self, customer_id: int) -> None:
        for entry_key in list(self._by_customer.get(customer_id, ())):
            self._forget(entry_key)

    def clear(self) -> None:
        self._cache.clear()
        self._by_customer.clear()

    def __len__(self) -> int:
        return len(self._cache)

    # -- lookups -----------------------------------------------------------------------------
    async def lookup(self, key: CallerKey, connection: AsyncConnection | None = None) -> Caller:
        """The caller from the cache or the database (and then cached)."""
        cached = self.peek(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        if connection is None:
            async with self._engine.connect() as own:
                caller = await self._fetch(own, key)
        else:
            caller = await self._fetch(connection, key)
        self.remember(caller)
        return caller

    async def _fetch(self, connection: AsyncConnection, key: CallerKey) -> Caller:
        if not (key.account or key.number):
            return Caller(key, None, None)
        query = self._queries[(bool(key.account), bool(key.number))]
        params = {"tenant": key.tenant, "account": key.account, "number": key.number}
        row = (await connection.execute(query, params)).first()
        if row is None:
            return Caller(key, None, None)
        accounts = tuple(sorted(row.accounts.split(";"))) if row.accounts else (row.account,)
        customer = Customer(
            id=int(row.id),
            tenant=key.tenant,
            account=row.account,
            accounts=accounts,
            name=row.name,
            tier=row.tier,
            language=row.language,
            preferred_agent=row.preferred_agent,
            notes=row.notes,
        )
        past = row.history
        if isinstance(past, str):  # SQLite gives the JSON text, psycopg the parsed value
            past = json.loads(past)
        history = tuple(
            sorted((PastInteraction(*item) for item in past or ()), key=lambda h: -h.started)
        )
        return Caller(key, customer, "account" if row.via == 0 else "number", history)
