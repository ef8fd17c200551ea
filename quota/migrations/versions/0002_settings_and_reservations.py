"""Staff settings (tiers, schools), pool states and class reservations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _audit():
    return [
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "tier_settings",
        sa.Column("tier", sa.String(50), primary_key=True),
        sa.Column("weight", sa.Float(), nullable=True),
        sa.Column("budget_gpu_hours", sa.Float(), nullable=True),
        sa.Column("student_budget_gpu_hours", sa.Float(), nullable=True),
        sa.Column("max_sessions_per_student", sa.Integer(), nullable=True),
        *_audit(),
    )
    op.create_table(
        "school_settings",
        sa.Column("school", sa.String(100), primary_key=True),
        sa.Column("weight", sa.Float(), nullable=True),
        sa.Column("guaranteed_share", sa.Float(), nullable=True),
        sa.Column("borrowing_limit_gpus", sa.Float(), nullable=True),
        sa.Column("budget_gpu_hours", sa.Float(), nullable=True),
        sa.Column("student_budget_gpu_hours", sa.Float(), nullable=True),
        sa.Column("max_sessions_per_student", sa.Integer(), nullable=True),
        *_audit(),
    )
    op.create_table(
        "pool_settings",
        sa.Column("pool", sa.String(100), primary_key=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        *_audit(),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("pool", sa.String(100), nullable=False),
        sa.Column("school", sa.String(100), nullable=False),
        sa.Column("class_id", sa.String(100), nullable=True),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_reservations_pool", "reservations", ["pool"])
    op.create_index("ix_reservations_school", "reservations", ["school"])


def downgrade() -> None:
    op.drop_table("reservations")
    op.drop_table("pool_settings")
    op.drop_table("school_settings")
    op.drop_table("tier_settings")
