"""Leases and the usage ledger.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("user", sa.String(100), nullable=False),
        sa.Column("school", sa.String(100), nullable=False),
        sa.Column("tier", sa.String(50), nullable=False),
        sa.Column("profile", sa.String(100), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(20), nullable=True),
        sa.Column("pool", sa.String(100), nullable=True),
        sa.Column("device", sa.String(200), nullable=True),
        sa.Column("unit_id", sa.String(300), nullable=True),
        sa.Column("unit_kind", sa.String(20), nullable=True),
        sa.Column("gpu_fraction", sa.Float(), nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True, unique=True),
        sa.Column("seq", sa.Integer(), nullable=False),
    )
    op.create_index("ix_leases_user", "leases", ["user"])
    op.create_index("ix_leases_school", "leases", ["school"])
    op.create_index("ix_leases_state", "leases", ["state"])
    op.create_index("ix_leases_seq", "leases", ["seq"])
    op.create_index("ix_leases_unit_granted", "leases", ["unit_id", "state"])
    op.create_table(
        "usage",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("lease_id", sa.String(40), nullable=False, unique=True),
        sa.Column("user", sa.String(100), nullable=False),
        sa.Column("school", sa.String(100), nullable=False),
        sa.Column("tier", sa.String(50), nullable=False),
        sa.Column("profile", sa.String(100), nullable=False),
        sa.Column("pool", sa.String(100), nullable=True),
        sa.Column("device", sa.String(200), nullable=True),
        sa.Column("unit_kind", sa.String(20), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("held_seconds", sa.Float(), nullable=False),
        sa.Column("gpu_seconds", sa.Float(), nullable=False),
        sa.Column("end_reason", sa.String(20), nullable=False),
    )
    op.create_index("ix_usage_user", "usage", ["user"])
    op.create_index("ix_usage_school", "usage", ["school"])
    op.create_table(
        "withdrawn_keys",
        sa.Column("idempotency_key", sa.String(200), primary_key=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("withdrawn_keys")
    op.drop_table("usage")
    op.drop_table("leases")
