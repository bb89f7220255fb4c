"""Alerts: rules, alert state, and the outbox of their notifications.

Revision ID: 0011
Revises: 0009
Create Date: 2026-11-29 21:30:00

- ``alert_rules``: kind, scope (a device or a site), parameters (JSON), enabled.
- ``alerts``: one row per raised alert with its evidence until it clears. The unique key
  (rule_id, open_subject) holds one open alert per rule and subject: ``open_subject`` is NULL
  once cleared, and NULLs never collide, so two worker copies that both raise insert once.
- ``alert_events``: the outbox (webhook and e-mail), written with the raise or clear.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# UTC, millisecond precision; spelled here so migrations never depend on model code.
DT = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", DT, nullable=False),
        sa.Column("updated_at", DT, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("open_subject", sa.String(length=64), nullable=True),
        sa.Column("raised_at", DT, nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("cleared_at", DT, nullable=True),
        sa.Column("clear_evidence", sa.JSON(), nullable=True),
        sa.Column("acknowledged_at", DT, nullable=True),
        sa.Column("acknowledged_by", sa.String(length=128), nullable=True),
        sa.Column("muted_until", DT, nullable=True),
        sa.ForeignKeyConstraint(["rule_id"], ["alert_rules.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rule_id", "open_subject", name="uq_alerts_open"),
    )
    op.create_index("ix_alerts_raised", "alerts", ["raised_at"], unique=False)
    op.create_index("ix_alerts_rule_subject", "alerts", ["rule_id", "subject"], unique=False)
    op.create_table(
        "alert_events",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("alert_id", BIGINT_ID, nullable=False),
        sa.Column("transition", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", DT, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", DT, nullable=False),
        sa.Column("delivered_at", DT, nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "channel", name="uq_alert_events_event_channel"),
    )
    op.create_index(
        "ix_alert_events_due", "alert_events", ["delivered_at", "next_attempt_at"], unique=False
    )
    op.create_index("ix_alert_events_alert_id", "alert_events", ["alert_id"], unique=False)


def downgrade() -> None:
    op.drop_table("alert_events")
    op.drop_table("alerts")
    op.drop_table("alert_rules")
