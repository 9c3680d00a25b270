"""Customer CSV import (``ctilink.routing.importer``) on SQLite and PostgreSQL: good files,
bad rows in both modes (with line numbers), updates, and files that cannot be imported."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ctilink import db
from ctilink.routing import schema as t
from ctilink.routing.importer import ImportFileError, import_customers

pytest_plugins = ["tests.routing_fixtures"]

GOOD = """tenant,account,name,tier,language,phones,preferred_agent,notes
acme,ACME-001,Alice Customer,gold,en,5551234567;+1 555 123 0000,6001,"Two tickets, one open"
acme,VIP-003;VIP-003-B,Dana Vip,VIP,fr-CA,(555) 444-6666,,
,BOB-002,Bob Caller,,,5559876543,,"multi
line note"
"""


def csv_file(tmp_path: Path, text: str, name: str = "customers.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every directory row, comparable (ids included)."""
    engine = db.create_sync_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table.name: sorted(tuple(row) for row in connection.execute(sa.select(table)))
                for table in t.DIRECTORY_TABLES
            }
    finally:
        engine.dispose()


def customers(url: str) -> dict[str, dict[str, Any]]:
    """Customers by key account, with their accounts and phones."""
    engine = db.create_sync_engine(url)
    try:
        with engine.connect() as connection:
            found = {}
            for row in connection.execute(
                sa.select(t.customers, t.tenants.c.name.label("tenant")).join(t.tenants)
            ):
                accounts = connection.execute(
                    sa.select(t.customer_accounts.c.account)
                    .where(t.customer_accounts.c.customer_id == row.id)
                    .order_by(t.customer_accounts.c.account)
                ).scalars()
                phones = connection.execute(
                    sa.select(t.customer_phones.c.e164)
                    .where(t.customer_phones.c.customer_id == row.id)
                    .order_by(t.customer_phones.c.e164)
                ).scalars()
                found[row.account] = {
                    "tenant": row.tenant,
                    "name": row.name,
                    "tier": row.tier,
                    "language": row.language,
                    "preferred_agent": row.preferred_agent,
                    "notes": row.notes,
                    "accounts": list(accounts),
                    "phones": list(phones),
                }
            return found
    finally:
        engine.dispose()


def revision(url: str) -> int:
    engine = db.create_sync_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.select(t.directory_revision.c.revision)).scalar_one())
    finally:
        engine.dispose()


def test_a_good_file_is_imported_with_numbers_in_e164(routing_url: str, tmp_path: Path) -> None:
    report = import_customers(routing_url, csv_file(tmp_path, GOOD))
    assert (report.rows, report.imported, report.skipped, report.errors) == (3, 3, 0, [])
    assert report.ok and report.summary().startswith(f"{tmp_path}/customers.csv: imported 3 ")
    assert customers(routing_url) == {
        "ACME-001": {
            "tenant": "acme",
            "name": "Alice Customer",
            "tier": "gold",
            "language": "en",
            "preferred_agent": "6001",
            "notes": "Two tickets, one open",
            "accounts": ["ACME-001"],
            "phones": ["+15551230000", "+15551234567"],
        },
        "VIP-003": {
            "tenant": "acme",
            "name": "Dana Vip",
            "tier": "VIP",
            "language": "fr-CA",
            "preferred_agent": None,
            "notes": None,
            "accounts": ["VIP-003", "VIP-003-B"],
            "phones": ["+15554446666"],
        },
        "BOB-002": {
            "tenant": "default",
            "name": "Bob Caller",
            "tier": None,
            "language": None,
            "preferred_agent": None,
            "notes": "multi\nline note",
            "accounts": ["BOB-002"],
            "phones": ["+15559876543"],
        },
    }
    assert revision(routing_url) == 1


def test_importing_again_updates_and_replaces_accounts_and_phones(
    routing_url: str, tmp_path: Path
) -> None:
    import_customers(routing_url, csv_file(tmp_path, GOOD))
    update = (
        "account,name,phones,tenant\n"
        "VIP-003;VIP-003-C,Dana V.,+33 6 12 34 56 78,acme\n"
        "NEW-9;ACME-001,Newcomer,,acme\n"  # takes over Alice's account number
    )
    report = import_customers(routing_url, csv_file(tmp_path, update, "update.csv"))
    assert report.imported == 2
    found = customers(routing_url)
    assert found["VIP-003"]["name"] == "Dana V."
    assert found["VIP-003"]["accounts"] == ["VIP-003", "VIP-003-C"]
    assert found["VIP-003"]["phones"] == ["+33612345678"]
    assert found["VIP-003"]["tier"] is None  # a missing column clears the field
    assert found["NEW-9"]["accounts"] == ["ACME-001", "NEW-9"]
    assert found["ACME-001"]["accounts"] == []
    assert len(found) == 4


BAD = """account,name,phones,language
OK-1,First,5551110001,en
,No Account,5551110002,en
OK-2,"Quoted, with comma",5551110003,en
OK-3,Bad Phone,call me maybe,en
OK-4,Short
OK-5,Bad Language,5551110005,english!
OK-6,"Multi
line",not-a-number,en
OK-7,Last,5551110007,en
"""
BAD_LINES = [
    (3, "account: missing"),
    (5, "phones: 'call me maybe' is not a phone number (read as dialled in region US)"),
    (6, "expected 4 fields, got 2"),
    (7, "language: 'english!' is not valid"),
    (8, "phones: 'not-a-number' is not a phone number (read as dialled in region US)"),
]


def test_skip_mode_imports_the_good_rows_and_reports_the_bad_ones(
    routing_url: str, tmp_path: Path
) -> None:
    report = import_customers(routing_url, csv_file(tmp_path, BAD), on_error="skip", batch_size=2)
    assert [(e.line, e.message) for e in report.errors] == BAD_LINES
    assert (report.rows, report.imported, report.skipped, report.error_count) == (8, 3, 5, 5)
    assert sorted(customers(routing_url)) == ["OK-1", "OK-2", "OK-7"]
    assert str(report.errors[0]) == "line 3: account: missing"
    assert report.summary().endswith("; skipped 5 bad row(s)")


def test_reject_mode_reports_every_bad_row_and_changes_nothing(
    routing_url: str, tmp_path: Path
) -> None:
    import_customers(routing_url, csv_file(tmp_path, GOOD, "first.csv"))
    before = snapshot(routing_url)
    # Small batches: good rows before the first bad one were already written, then undone.
    report = import_customers(routing_url, csv_file(tmp_path, BAD), batch_size=1)
    assert report.rejected and not report.ok
    assert [(e.line, e.message) for e in report.errors] == BAD_LINES
    assert report.imported == 0
    assert report.summary() == (
        f"{tmp_path}/customers.csv: rejected: 5 bad row(s) in 8; nothing was imported"
    )
    assert snapshot(routing_url) == before
    assert revision(routing_url) == 1


def test_a_bad_row_late_in_a_big_file_rejects_everything(routing_url: str, tmp_path: Path) -> None:
    lines = ["account,name,phones"] + [f"A{i},Customer {i},555{i:07d}" for i in range(3000)]
    lines.insert(2500, "B,Broken,123")
    path = csv_file(tmp_path, "\n".join(lines) + "\n")
    report = import_customers(routing_url, path, batch_size=100)
    assert [(e.line, e.message) for e in report.errors] == [
        (2501, "phones: '123' is not a phone number (read as dialled in region US)")
    ]
    assert counts(routing_url) == (0, 0, 0)
    report = import_customers(routing_url, path, on_error="skip", batch_size=100)
    assert report.imported == 3000 and report.skipped == 1
    assert counts(routing_url) == (3000, 3000, 3000)


def counts(url: str) -> tuple[int, int, int]:
    """Customers, accounts, phones."""
    engine = db.create_sync_engine(url)
    try:
        with engine.connect() as connection:
            return tuple(  # type: ignore[return-value]
                connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for table in (t.customers, t.customer_accounts, t.customer_phones)
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty (expected a header line)"),
        ("account,nom\n", "line 1: unknown column 'nom' (expected some of tenant, account, name,"),
        ("account,phones\n", "line 1: missing column(s) name"),
        ("account,name,Account\n", "line 1: a column is named twice"),
        ('account,name\nA,"unterminated\n', "line 2: not valid CSV: unexpected end of data"),
    ],
)
def test_files_that_cannot_be_imported(
    routing_url: str, tmp_path: Path, text: str, message: str
) -> None:
    path = csv_file(tmp_path, text)
    with pytest.raises(ImportFileError) as info:
        import_customers(routing_url, path)
    assert str(info.value).startswith(f"{path}: {message}")
    assert customers(routing_url) == {}


def test_not_utf8_and_missing_files(routing_url: str, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("account,name\nA1,Zoë\n".encode("latin-1"))
    with pytest.raises(ImportFileError, match=r"latin1\.csv: after line \d: not UTF-8"):
        import_customers(routing_url, path)
    with pytest.raises(ImportFileError, match=r"nope\.csv: cannot read: No such file"):
        import_customers(routing_url, tmp_path / "nope.csv")
    bom = csv_file(tmp_path, "\ufeffaccount,name\nA1,Zoë\n", "bom.csv")
    assert import_customers(routing_url, bom).imported == 1


def test_trunk_prefix_and_region(routing_url: str, tmp_path: Path) -> None:
    text = (
        "account,name,phones\nF1,Français,0612345678;00 44 20 7946 0018\nF2,Sortant,90145678901\n"
    )
    report = import_customers(
        routing_url, csv_file(tmp_path, text), default_region="FR", trunk_prefix="9"
    )
    assert report.imported == 2
    found = customers(routing_url)
    assert found["F1"]["phones"] == ["+33612345678", "+442079460018"]
    assert found["F2"]["phones"] == ["+33145678901"]


def test_memory_stays_flat_whatever_the_file_size(routing_url: str, tmp_path: Path) -> None:
    """Peak Python allocations for 10,000 rows are those of one batch, not of the file."""

    def peak(rows: int) -> int:
        path = tmp_path / f"{rows}.csv"
        with open(path, "w") as out:
            out.write("account,name,phones,notes\n")
            for i in range(rows):
                out.write(f"M{rows}-{i},Customer {i},+1555{i:07d},{'x' * 100}\n")
        tracemalloc.start()
        try:
            report = import_customers(routing_url, path, batch_size=200)
            used = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert report.imported == rows
        return used

    small, big = peak(1_000), peak(10_000)
    assert big < small * 1.5, (small, big)
