"""Bulk import of customers from CSV (``ctilink db import FILE``), streaming, all or nothing.

The file
--------
UTF-8 (a byte-order mark is allowed), comma-separated, RFC 4180 quoting. The first line
names the columns, in any order, case-insensitively; ``account`` and ``name`` are
required, the others optional:

=================  ==========================================================================
column             value
=================  ==========================================================================
tenant             the tenant (1-32 of A-Z a-z 0-9 _ -); empty or absent: ``default``
account            the customer's account numbers, ``;``-separated (1-64 characters each,
                   at least one); the first is the customer's key in the tenant: a row
                   whose first account exists already updates that customer
name               the customer's name (1-200 characters)
tier               the tier / VIP level, e.g. ``VIP`` (see ``[routing] tier_priority``)
language           a language tag, e.g. ``en`` or ``fr-CA``
phones             phone numbers, ``;``-separated, in any form the default region's callers
                   would dial them (``5551234567``, ``+1 555 123 4567``); stored in E.164
preferred_agent    the agent id (device id, e.g. ``6001``) who should take this customer
notes              free text for the agent's screen (up to 2000 characters)
=================  ==========================================================================

An updated customer's accounts and phones are replaced by the row's. An account number
that belonged to another customer moves to this one (the last row wins). Empty lines are
ignored.

Theory of operation
-------------------
The file is read one record at a time (``csv.reader`` on a text stream) and handed to the
database in batches of ``batch_size`` rows, so memory stays flat whatever the file's size.
On PostgreSQL each batch is COPied into a temporary staging table, and the end of the file
merges it set-wise into the directory (a few INSERT ... SELECT statements); on SQLite each
batch is written at once (an upsert of the customers, a read of their ids, then their
accounts and phones, each an executemany of one prepared statement). The whole import is
ONE transaction, in both modes, so nothing is ever half-imported:

* ``on_error="reject"``: the first bad row stops the writing; the rest of the file is
  still checked (so every bad line is reported), then the transaction is rolled back:
  the database is exactly as before;
* ``on_error="skip"``: bad rows are reported and left out; the others are committed
  together at the end.

Each bad row is reported with its line number (the line where its record starts) and
what is wrong. A file that cannot be read as a whole (missing, not UTF-8, a bad header)
raises ``ImportFileError``. A successful import bumps ``directory_revision``, which tells
a running daemon to drop its cached callers.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import sqlalchemy as sa
from sqlalchemy.engine import URL

from ctilink.db import create_sync_engine, insert_for
from ctilink.errors import CtilinkError
from ctilink.routing import schema as t
from ctilink.routing.admin import bump_revision, tenant_ids
from ctilink.routing.numbers import NumberNormalizer

COLUMNS: Final = (
    "tenant",
    "account",
    "name",
    "tier",
    "language",
    "phones",
    "preferred_agent",
    "notes",
)
REQUIRED: Final = ("account", "name")
MAX_REPORTED: Final = 100  # bad rows listed in a report (all are counted)
DEFAULT_TENANT: Final = "default"

_TENANT = re.compile(r"[A-Za-z0-9_-]{1,32}")
_AGENT = re.compile(r"[A-Za-z0-9_.-]{1,80}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")


class ImportFileError(CtilinkError):
    """The file cannot be imported at all (unreadable, not UTF-8, bad header)."""


class RowInvalid(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CustomerRow:
    tenant: str
    accounts: tuple[str, ...]
    name: str
    tier: str | None
    language: str | None
    phones: tuple[str, ...]
    preferred_agent: str | None
    notes: str | None


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ImportReport:
    path: str
    on_error: str
    rows: int = 0  # data rows read
    imported: int = 0  # good rows imported (a customer in two rows counts twice; 0 if rejected)
    skipped: int = 0
    errors: list[RowError] = field(default_factory=list)  # the first MAX_REPORTED
    error_count: int = 0
    rejected: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.rejected

    def summary(self) -> str:
        if self.rejected:
            return (
                f"{self.path}: rejected: {self.error_count} bad row(s) in {self.rows};"
                " nothing was imported"
            )
        text = f"{self.path}: imported {self.imported} customer(s) in {self.seconds:.1f} s"
        if self.skipped:
            text += f"; skipped {self.skipped} bad row(s)"
        return text


# -- reading -------------------------------------------------------------------------------
def _optional(value: str, what: str, limit: int, pattern: re.Pattern[str] | None = None) -> Any:
    value = value.strip()
    if not value:
        return None
    if len(value) > limit:
        raise RowInvalid(f"{what}: longer than {limit} characters")
    if pattern is not None and pattern.fullmatch(value) is None:
        raise RowInvalid(f"{what}: {value[:40]!r} is not valid")
    return value


def parse_row(values: dict[str, str], normalizer: NumberNormalizer) -> CustomerRow:
    """One record (column -> text) as a customer; RowInvalid says what is wrong."""
    tenant = _optional(values.get("tenant", ""), "tenant", 32, _TENANT) or DEFAULT_TENANT
    accounts = tuple(a.strip() for a in values["account"].split(";") if a.strip())
    if not accounts:
        raise RowInvalid("account: missing")
    for account in accounts:
        if len(account) > 64:
            raise RowInvalid(f"account: {account[:40]!r}... is longer than 64 characters")
    if len(set(accounts)) != len(accounts):
        raise RowInvalid("account: an account number is repeated")
    name = _optional(values["name"], "name", 200)
    if name is None:
        raise RowInvalid("name: missing")
    phones: list[str] = []
    for raw in values.get("phones", "").split(";"):
        if not raw.strip():
            continue
        e164 = normalizer.normalize(raw)
        if e164 is None:
            raise RowInvalid(
                f"phones: {raw.strip()[:40]!r} is not a phone number"
                f" (read as dialled in region {normalizer.default_region})"
            )
        if e164 not in phones:
            phones.append(e164)
    return CustomerRow(
        tenant=tenant,
        accounts=accounts,
        name=name,
        tier=_optional(values.get("tier", ""), "tier", 40),
        language=_optional(values.get("language", ""), "language", 35, _LANGUAGE),
        phones=tuple(phones),
        preferred_agent=_optional(values.get("preferred_agent", ""), "preferred_agent", 80, _AGENT),
        notes=_optional(values.get("notes", ""), "notes", 2000),
    )


def _header(record: list[str], path: str) -> list[str]:
    columns = [name.strip().lower() for name in record]
    for name in columns:
        if name not in COLUMNS:
            raise ImportFileError(
                f"{path}: line 1: unknown column {name!r} (expected some of {', '.join(COLUMNS)})"
            )
    if len(set(columns)) != len(columns):
        raise ImportFileError(f"{path}: line 1: a column is named twice")
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        raise ImportFileError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
    return columns


def records(stream: TextIO, path: str) -> Iterator[tuple[int, dict[str, str] | RowError]]:
    """(line, record as column -> text, or the error) for every non-empty data record."""
    reader = csv.reader(stream, strict=True)
    try:
        first = next(reader, None)
        if first is None:
            raise ImportFileError(f"{path}: the file is empty (expected a header line)")
        columns = _header(first, path)
        line = reader.line_num + 1
        for record in reader:
            start, line = line, reader.line_num + 1
            if not record or record == [""]:
                continue
            if len(record) != len(columns):
                yield start, RowError(start, f"expected {len(columns)} fields, got {len(record)}")
                continue
            yield start, dict(zip(columns, record, strict=True))
    except csv.Error as exc:
        raise ImportFileError(f"{path}: line {reader.line_num}: not valid CSV: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            f"{path}: after line {reader.line_num}: not UTF-8 ({exc.reason})"
        ) from None


# -- writing -------------------------------------------------------------------------------
class _Writer:
    """Writes batches of customers inside the import's transaction, statement by statement
    (an upsert of the customers, a read of their ids, their accounts and phones, each an
    executemany): SQLite, where executemany steps one prepared statement in C."""

    def __init__(self, connection: sa.Connection, now: float) -> None:
        self.connection = connection
        self.now = now
        self.tenants: dict[str, int] = {}
        c = t.customers.c
        insert = insert_for(connection.dialect.name, t.customers)
        self.upsert = insert.on_conflict_do_update(
            index_elements=[c.tenant_id, c.account],
            set_={name: insert.excluded[name] for name in _UPDATED},
        )
        accounts = insert_for(connection.dialect.name, t.customer_accounts)
        self.accounts = accounts.on_conflict_do_update(
            index_elements=[t.customer_accounts.c.tenant_id, t.customer_accounts.c.account],
            set_={"customer_id": accounts.excluded.customer_id},
        )
        self.ids = sa.select(c.id, c.account).where(
            c.tenant_id == sa.bindparam("tenant_id"),
            c.account.in_(sa.bindparam("keys", expanding=True)),
        )

    def write(self, batch: list[tuple[int, CustomerRow]]) -> None:
        unique = {(row.tenant, row.accounts[0]): row for _, row in batch}  # the last row wins
        rows = list(unique.values())
        self.tenants.update(
            tenant_ids(self.connection, {r.tenant for r in rows} - self.tenants.keys())
        )
        self.connection.execute(
            self.upsert,
            [
                {
                    "tenant_id": self.tenants[r.tenant],
                    "account": r.accounts[0],
                    "name": r.name,
                    "tier": r.tier,
                    "language": r.language,
                    "preferred_agent": r.preferred_agent,
                    "notes": r.notes,
                    "updated_at": self.now,
                }
                for r in rows
            ],
        )
        ids: dict[tuple[str, str], int] = {}
        for tenant in {r.tenant for r in rows}:
            keys = [r.accounts[0] for r in rows if r.tenant == tenant]
            found = self.connection.execute(
                self.ids, {"tenant_id": self.tenants[tenant], "keys": keys}
            )
            ids.update(((tenant, account), id_) for id_, account in found)
        customer_ids = list(ids.values())
        for table in (t.customer_accounts, t.customer_phones):
            self.connection.execute(table.delete().where(table.c.customer_id.in_(customer_ids)))
        accounts, phones = [], []
        for r in rows:
            customer_id, tenant_id = ids[(r.tenant, r.accounts[0])], self.tenants[r.tenant]
            accounts += [
                {"tenant_id": tenant_id, "account": a, "customer_id": customer_id}
                for a in r.accounts
            ]
            phones += [
                {"tenant_id": tenant_id, "e164": p, "customer_id": customer_id} for p in r.phones
            ]
        self.connection.execute(self.accounts, accounts)
        if phones:
            self.connection.execute(t.customer_phones.insert(), phones)

    def finish(self) -> None:
        pass


_UPDATED: Final = ("name", "tier", "language", "preferred_agent", "notes", "updated_at")
_STAGED: Final = (
    "line",
    "tenant",
    "account",
    "accounts",
    "name",
    "tier",
    "language",
    "phones",
    "preferred_agent",
    "notes",
)
# The set-based merge of the staged rows (PostgreSQL), in order. The latest line of a
# customer (or of an account number) wins, as in the file.
_MERGE: Final = (
    "INSERT INTO tenants (name) SELECT DISTINCT tenant FROM ctilink_import"
    " ON CONFLICT (name) DO NOTHING",
    "CREATE TEMPORARY TABLE ctilink_latest ON COMMIT DROP AS"
    " SELECT DISTINCT ON (t.id, i.account) t.id AS tenant_id, i.*"
    " FROM ctilink_import i JOIN tenants t ON t.name = i.tenant"
    " ORDER BY t.id, i.account, i.line DESC",
    "INSERT INTO customers (tenant_id, account, name, tier, language, preferred_agent, notes,"
    " updated_at) SELECT tenant_id, account, name, tier, language, preferred_agent, notes,"
    " %(now)s FROM ctilink_latest ON CONFLICT (tenant_id, account) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _UPDATED),
    "CREATE TEMPORARY TABLE ctilink_ids ON COMMIT DROP AS"
    " SELECT c.id AS customer_id, l.tenant_id, l.line, l.accounts, l.phones"
    " FROM ctilink_latest l JOIN customers c"
    " ON c.tenant_id = l.tenant_id AND c.account = l.account",
    "DELETE FROM customer_accounts a USING ctilink_ids i WHERE a.customer_id = i.customer_id",
    "DELETE FROM customer_phones p USING ctilink_ids i WHERE p.customer_id = i.customer_id",
    "INSERT INTO customer_accounts (tenant_id, account, customer_id)"
    " SELECT DISTINCT ON (i.tenant_id, a.account) i.tenant_id, a.account, i.customer_id"
    " FROM ctilink_ids i, unnest(string_to_array(i.accounts, ';')) AS a(account)"
    " ORDER BY i.tenant_id, a.account, i.line DESC"
    " ON CONFLICT (tenant_id, account) DO UPDATE SET customer_id = excluded.customer_id",
    "INSERT INTO customer_phones (tenant_id, e164, customer_id)"
    " SELECT i.tenant_id, p.e164, i.customer_id"
    " FROM ctilink_ids i, unnest(string_to_array(i.phones, ';')) AS p(e164)"
    " WHERE i.phones <> ''",
)


class _PostgresWriter:
    """Stages batches with COPY into a temporary table, then merges them set-wise in
    ``finish`` (one statement per table for the whole file): the fast path on PostgreSQL.
    The staging table lives in the import's transaction (dropped at commit or rollback)."""

    def __init__(self, connection: sa.Connection, now: float) -> None:
        self.connection = connection
        self.now = now
        self.raw: Any = connection.connection.driver_connection  # psycopg.Connection
        self.created = False

    def write(self, batch: list[tuple[int, CustomerRow]]) -> None:
        with self.raw.cursor() as cursor:
            if not self.created:
                cursor.execute(
                    "CREATE TEMPORARY TABLE ctilink_import (line bigint, tenant text,"
                    " account text, accounts text, name text, tier text, language text,"
                    " phones text, preferred_agent text, notes text) ON COMMIT DROP"
                )
                self.created = True
            columns = ", ".join(_STAGED)
            with cursor.copy(f"COPY ctilink_import ({columns}) FROM STDIN") as copy:
                for line, r in batch:
                    copy.write_row(
                        (
                            line,
                            r.tenant,
                            r.accounts[0],
                            ";".join(r.accounts),
                            r.name,
                            r.tier,
                            r.language,
                            ";".join(r.phones),
                            r.preferred_agent,
                            r.notes,
                        )
                    )

    def finish(self) -> None:
        if not self.created:
            return
        with self.raw.cursor() as cursor:
            for statement in _MERGE:
                cursor.execute(statement, {"now": self.now} if "%(now)s" in statement else None)


def import_customers(
    url: str | URL,
    path: str | Path,
    *,
    on_error: str = "reject",
    default_region: str = "US",
    trunk_prefix: str = "",
    batch_size: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import the customers of the CSV file ``path`` into the database at ``url`` (blocking;
    see the module docstring). ``progress`` is called with the rows read, every batch."""
    if on_error not in ("reject", "skip"):
        raise ValueError(f"on_error is 'reject' or 'skip', not {on_error!r}")
    started = time.monotonic()
    # Numbers in an import file are mostly unique: a small cache, or memory would grow.
    normalizer = NumberNormalizer(default_region, trunk_prefix, cache_size=1024)
    report = ImportReport(str(path), on_error)
    try:
        stream = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    engine = create_sync_engine(url)
    try:
        with stream, engine.connect() as connection:
            transaction = connection.begin()
            try:
                _run(
                    connection, records(stream, str(path)), normalizer, report, batch_size, progress
                )
                if report.rejected:
                    transaction.rollback()
                    report.imported = 0
                else:
                    bump_revision(connection)
                    transaction.commit()
            except BaseException:
                transaction.rollback()
                raise
    finally:
        engine.dispose()
    report.seconds = time.monotonic() - started
    return report


def _run(
    connection: sa.Connection,
    source: Iterator[tuple[int, dict[str, str] | RowError]],
    normalizer: NumberNormalizer,
    report: ImportReport,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> None:
    kind = _PostgresWriter if connection.dialect.name == "postgresql" else _Writer
    writer = kind(connection, time.time())
    batch: list[tuple[int, CustomerRow]] = []
    for line, record in source:
        report.rows += 1
        error = record if isinstance(record, RowError) else None
        if isinstance(record, dict):
            try:
                parsed = parse_row(record, normalizer)
            except RowInvalid as exc:
                error = RowError(line, str(exc))
        if error is not None:
            report.error_count += 1
            if len(report.errors) < MAX_REPORTED:
                report.errors.append(error)
            if report.on_error == "reject":
                report.rejected, batch = True, []
            else:
                report.skipped += 1
            continue
        if report.rejected:
            continue  # only checking the rest of the file now
        batch.append((line, parsed))
        report.imported += 1
        if len(batch) >= batch_size:
            writer.write(batch)
            batch = []
            if progress is not None:
                progress(report.rows)
    if not report.rejected:
        if batch:
            writer.write(batch)
        writer.finish()
