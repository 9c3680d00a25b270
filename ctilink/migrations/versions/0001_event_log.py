"""Event log: every published event, numbered, as the JSON clients received.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

``seq`` is the hub's daemon-wide sequence number (assigned by ctilink, never by the
database); ``body`` is the exact wire JSON text (text, not JSON/JSONB, which would reorder
keys and whitespace). ``time`` is when the switch says the event happened (POSIX seconds);
``logged_at`` is when ctilink logged it, by the daemon's clock: retention prunes on it, so
replayed traces and switches with a wrong clock keep their history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# INTEGER PRIMARY KEY makes SQLite use the rowid itself (one B-tree, not two).
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "event_log",
        sa.Column("seq", _SEQ, autoincrement=False, nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("logged_at", sa.Double(), nullable=False),
        sa.Column("switch", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("call_id", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_event_log")),
    )
    op.create_index(op.f("ix_event_log_logged_at"), "event_log", ["logged_at"])
    op.create_index(op.f("ix_event_log_call_id"), "event_log", ["call_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_event_log_call_id"), table_name="event_log")
    op.drop_index(op.f("ix_event_log_logged_at"), table_name="event_log")
    op.drop_table("event_log")
