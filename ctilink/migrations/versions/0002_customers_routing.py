"""Customer database and routing: directory, interactions, routing decisions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

The tables of ``ctilink.routing.schema`` (its docstring explains them). Written out here
rather than created from the models, so this revision keeps meaning what it meant when
later ones change the models; ``tests/test_routing_schema.py`` checks that the result
matches the models on PostgreSQL and SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> sa.Column[int]:
    return sa.Column("id", _ID, autoincrement=True, nullable=False)


def _ref(name: str, nullable: bool = False) -> sa.Column[int]:
    """A column referring to another table's id (its constraint comes with _fk)."""
    return sa.Column(name, _ID, nullable=nullable)


def _fk(table: str, column: str, target: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        [f"{target}.id"],
        name=op.f(f"fk_{table}_{column}_{target}"),
        ondelete=ondelete,
    )


def upgrade() -> None:
    op.create_table(
        "tenants",
        _id(),
        sa.Column("name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_tenants_name")),
    )
    op.create_table(
        "customers",
        _id(),
        _ref("tenant_id"),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("tier", sa.Text(), nullable=True),
        sa.Column("language", sa.Text(), nullable=True),
        sa.Column("preferred_agent", sa.Text(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        _fk("customers", "tenant_id", "tenants"),
        sa.UniqueConstraint("tenant_id", "account", name=op.f("uq_customers_tenant_id_account")),
    )
    op.create_table(
        "customer_accounts",
        _ref("tenant_id"),
        sa.Column("account", sa.Text(), nullable=False),
        _ref("customer_id"),
        sa.PrimaryKeyConstraint("tenant_id", "account", name=op.f("pk_customer_accounts")),
        _fk("customer_accounts", "tenant_id", "tenants"),
        _fk("customer_accounts", "customer_id", "customers"),
    )
    op.create_index(op.f("ix_customer_accounts_customer_id"), "customer_accounts", ["customer_id"])
    op.create_table(
        "customer_phones",
        _id(),
        _ref("tenant_id"),
        sa.Column("e164", sa.Text(), nullable=False),
        _ref("customer_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_phones")),
        _fk("customer_phones", "tenant_id", "tenants"),
        _fk("customer_phones", "customer_id", "customers"),
    )
    op.create_index(op.f("ix_customer_phones_customer_id"), "customer_phones", ["customer_id"])
    op.create_index(
        op.f("ix_customer_phones_tenant_id_e164"), "customer_phones", ["tenant_id", "e164"]
    )
    op.create_table(
        "directory_revision",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", _ID, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_revision")),
    )
    op.bulk_insert(
        sa.table("directory_revision", sa.column("id"), sa.column("revision")),
        [{"id": 1, "revision": 0}],
    )
    op.create_table(
        "agents",
        _id(),
        _ref("tenant_id"),
        sa.Column("agent", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("device", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        _fk("agents", "tenant_id", "tenants"),
        sa.UniqueConstraint("tenant_id", "agent", name=op.f("uq_agents_tenant_id_agent")),
    )
    op.create_table(
        "agent_skills",
        _ref("agent_id"),
        sa.Column("skill", sa.Text(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "skill", name=op.f("pk_agent_skills")),
        _fk("agent_skills", "agent_id", "agents"),
    )
    op.create_table(
        "queues",
        _id(),
        _ref("tenant_id"),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("service_level_seconds", sa.Integer(), nullable=True),
        sa.Column("timezone", sa.Text(), server_default="UTC", nullable=False),
        sa.Column("closed_destination", sa.Text(), nullable=True),
        sa.Column("overflow_queue", sa.Text(), nullable=True),
        sa.Column("overflow_wait_seconds", sa.Integer(), nullable=True),
        sa.Column("handle_seconds", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queues")),
        _fk("queues", "tenant_id", "tenants"),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_queues_tenant_id_name")),
    )
    op.create_table(
        "queue_numbers",
        _ref("tenant_id"),
        sa.Column("number", sa.Text(), nullable=False),
        _ref("queue_id"),
        sa.PrimaryKeyConstraint("tenant_id", "number", name=op.f("pk_queue_numbers")),
        _fk("queue_numbers", "tenant_id", "tenants"),
        _fk("queue_numbers", "queue_id", "queues"),
    )
    op.create_table(
        "queue_skills",
        _ref("queue_id"),
        sa.Column("skill", sa.Text(), nullable=False),
        sa.Column("min_level", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("queue_id", "skill", name=op.f("pk_queue_skills")),
        _fk("queue_skills", "queue_id", "queues"),
    )
    op.create_table(
        "queue_hours",
        _id(),
        _ref("queue_id"),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("opens", sa.Integer(), nullable=False),
        sa.Column("closes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_hours")),
        _fk("queue_hours", "queue_id", "queues"),
    )
    op.create_index(op.f("ix_queue_hours_queue_id"), "queue_hours", ["queue_id"])
    op.create_table(
        "queue_holidays",
        _ref("queue_id"),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("queue_id", "day", name=op.f("pk_queue_holidays")),
        _fk("queue_holidays", "queue_id", "queues"),
    )
    op.create_table(
        "interactions",
        _id(),
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("switch", sa.Text(), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False),
        _ref("customer_id", nullable=True),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("started", sa.Double(), nullable=False),
        sa.Column("answered", sa.Double(), nullable=True),
        sa.Column("ended", sa.Double(), nullable=False),
        sa.Column("calling_number", sa.Text(), nullable=True),
        sa.Column("called_number", sa.Text(), nullable=True),
        sa.Column("queue", sa.Text(), nullable=True),
        sa.Column("agent", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("cause", sa.Text(), nullable=True),
        sa.Column("switch_call_id", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interactions")),
        _fk("interactions", "customer_id", "customers", ondelete="SET NULL"),
        sa.UniqueConstraint("call_id", name=op.f("uq_interactions_call_id")),
    )
    op.create_index(
        op.f("ix_interactions_customer_id_started"), "interactions", ["customer_id", "started"]
    )
    op.create_table(
        "routing_decisions",
        _id(),
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("switch", sa.Text(), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=True),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("fallback", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_decisions")),
    )
    op.create_index(op.f("ix_routing_decisions_call_id"), "routing_decisions", ["call_id"])
    op.create_index(op.f("ix_routing_decisions_time"), "routing_decisions", ["time"])


def downgrade() -> None:
    for table in (
        "routing_decisions",
        "interactions",
        "queue_holidays",
        "queue_hours",
        "queue_skills",
        "queue_numbers",
        "queues",
        "agent_skills",
        "agents",
        "directory_revision",
        "customer_phones",
        "customer_accounts",
        "customers",
        "tenants",
    ):
        op.drop_table(table)  # its indexes go with it
