"""The customer database and routing tables, on the shared ``ctilink.db.metadata``.

Theory of operation
-------------------
Three groups of tables, created by migration 0002 (this module and the migration must
agree; ``tests/test_routing_schema.py`` compares them):

* **the directory** (what admins import): ``tenants``; ``customers`` (one row per customer,
  ``account`` being the customer's key within its tenant: the first account number of the
  import file); ``customer_accounts`` (every account number, the key one included, unique
  per tenant: "account number typed into the IVR" → customer); ``customer_phones``
  (numbers in E.164, several per customer, indexed per tenant); ``agents`` and
  ``agent_skills`` (an agent is named as ctilink names it: the device id such as "6001");
  ``queues`` with ``queue_numbers`` (the dialled numbers / route points a queue serves),
  ``queue_skills`` (minimum levels), ``queue_hours`` (weekly opening intervals in the
  queue's time zone; none at all means open 24/7) and ``queue_holidays`` (closed all day);
  ``directory_revision``, one row whose counter every admin write bumps in its own
  transaction, so that a running daemon notices an import made by another process and
  drops its caches.
* **history**: ``interactions``, one row per call, written when the call ends.
* **audit**: ``routing_decisions``, one row per answered route request, fallbacks included.

Times are POSIX seconds in double precision, like the event log. ``tenant`` in the history
and audit tables is the switch's tenant as text (no foreign key: a tenant needs no customer
to take calls). Ids are BIGINT on PostgreSQL and INTEGER (the rowid) on SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa

from ctilink.db import metadata

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
CASCADE = "CASCADE"

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text(), nullable=False, unique=True),
)

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", ID, sa.ForeignKey("tenants.id", ondelete=CASCADE), nullable=False),
    sa.Column("account", sa.Text(), nullable=False),
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("tier", sa.Text(), nullable=True),
    sa.Column("language", sa.Text(), nullable=True),
    sa.Column("preferred_agent", sa.Text(), nullable=True),
    sa.Column("notes", sa.Text(), nullable=True),
    sa.Column("updated_at", sa.Double(), nullable=False),
    sa.UniqueConstraint("tenant_id", "account"),
)

customer_accounts = sa.Table(
    "customer_accounts",
    metadata,
    sa.Column("tenant_id", ID, sa.ForeignKey("tenants.id", ondelete=CASCADE), nullable=False),
    sa.Column("account", sa.Text(), nullable=False),
    sa.Column(
        "customer_id",
        ID,
        sa.ForeignKey("customers.id", ondelete=CASCADE),
        nullable=False,
        index=True,
    ),
    sa.PrimaryKeyConstraint("tenant_id", "account"),
)

customer_phones = sa.Table(
    "customer_phones",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", ID, sa.ForeignKey("tenants.id", ondelete=CASCADE), nullable=False),
    sa.Column("e164", sa.Text(), nullable=False),
    sa.Column(
        "customer_id",
        ID,
        sa.ForeignKey("customers.id", ondelete=CASCADE),
        nullable=False,
        index=True,
    ),
    sa.Index(None, "tenant_id", "e164"),
)

directory_revision = sa.Table(
    "directory_revision",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("revision", ID, nullable=False),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", ID, sa.ForeignKey("tenants.id", ondelete=CASCADE), nullable=False),
    sa.Column("agent", sa.Text(), nullable=False),
    sa.Column("name", sa.Text(), nullable=True),
    sa.Column("device", sa.Text(), nullable=True),
    sa.UniqueConstraint("tenant_id", "agent"),
)

agent_skills = sa.Table(
    "agent_skills",
    metadata,
    sa.Column("agent_id", ID, sa.ForeignKey("agents.id", ondelete=CASCADE), nullable=False),
    sa.Column("skill", sa.Text(), nullable=False),
    sa.Column("level", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("agent_id", "skill"),
)

queues = sa.Table(
    "queues",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", ID, sa.ForeignKey("tenants.id", ondelete=CASCADE), nullable=False),
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("service_level_seconds", sa.Integer(), nullable=True),
    sa.Column("timezone", sa.Text(), nullable=False, server_default="UTC"),
    sa.Column("closed_destination", sa.Text(), nullable=True),
    sa.Column("overflow_queue", sa.Text(), nullable=True),
    sa.Column("overflow_wait_seconds", sa.Integer(), nullable=True),
    sa.Column("handle_seconds", sa.Integer(), nullable=True),
    sa.UniqueConstraint("tenant_id", "name"),
)

queue_numbers = sa.Table(
    "queue_numbers",
    metadata,
    sa.Column("tenant_id", ID, sa.ForeignKey("tenants.id", ondelete=CASCADE), nullable=False),
    sa.Column("number", sa.Text(), nullable=False),
    sa.Column("queue_id", ID, sa.ForeignKey("queues.id", ondelete=CASCADE), nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "number"),
)

queue_skills = sa.Table(
    "queue_skills",
    metadata,
    sa.Column("queue_id", ID, sa.ForeignKey("queues.id", ondelete=CASCADE), nullable=False),
    sa.Column("skill", sa.Text(), nullable=False),
    sa.Column("min_level", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("queue_id", "skill"),
)

queue_hours = sa.Table(
    "queue_hours",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column(
        "queue_id", ID, sa.ForeignKey("queues.id", ondelete=CASCADE), nullable=False, index=True
    ),
    sa.Column("weekday", sa.Integer(), nullable=False),  # 0 Monday .. 6 Sunday
    sa.Column("opens", sa.Integer(), nullable=False),  # minutes after midnight, local time
    sa.Column("closes", sa.Integer(), nullable=False),  # exclusive; 1440 = midnight
)

queue_holidays = sa.Table(
    "queue_holidays",
    metadata,
    sa.Column("queue_id", ID, sa.ForeignKey("queues.id", ondelete=CASCADE), nullable=False),
    sa.Column("day", sa.Date(), nullable=False),
    sa.Column("name", sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint("queue_id", "day"),
)

interactions = sa.Table(
    "interactions",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.Text(), nullable=False, unique=True),
    sa.Column("switch", sa.Text(), nullable=False),
    sa.Column("tenant", sa.Text(), nullable=False),
    sa.Column("customer_id", ID, sa.ForeignKey("customers.id", ondelete="SET NULL"), nullable=True),
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
    sa.Index(None, "customer_id", "started"),
)

routing_decisions = sa.Table(
    "routing_decisions",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.Text(), nullable=False, index=True),
    sa.Column("switch", sa.Text(), nullable=False),
    sa.Column("tenant", sa.Text(), nullable=False),
    sa.Column("time", sa.Double(), nullable=False, index=True),
    sa.Column("request", sa.JSON(), nullable=False),
    sa.Column("decision", sa.JSON(), nullable=True),
    sa.Column("rule", sa.Text(), nullable=False),
    sa.Column("candidates", sa.JSON(), nullable=False),
    sa.Column("steps", sa.JSON(), nullable=False),
    sa.Column("latency_ms", sa.Double(), nullable=False),
    sa.Column("fallback", sa.Boolean(), nullable=False),
)

DIRECTORY_TABLES = (
    tenants,
    customers,
    customer_accounts,
    customer_phones,
    directory_revision,
    agents,
    agent_skills,
    queues,
    queue_numbers,
    queue_skills,
    queue_hours,
    queue_holidays,
)
ALL_TABLES = (*DIRECTORY_TABLES, interactions, routing_decisions)
