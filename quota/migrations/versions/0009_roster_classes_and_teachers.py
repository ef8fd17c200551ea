"""Classes and teacher accounts created on the classes page (quota.tables.RosterClass, and
``roster_accounts.role``), and students a teacher removed (``roster_accounts.deactivated_at``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "roster_classes",
        sa.Column("school", sa.String(63), primary_key=True),
        sa.Column("class_id", sa.String(63), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("teacher", sa.String(63), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    # every row imported before this revision is a student, still active
    op.add_column("roster_accounts", sa.Column("role", sa.String(20), nullable=False, server_default="student"))
    op.add_column("roster_accounts", sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("roster_accounts") as batch:
        batch.drop_column("deactivated_at")
        batch.drop_column("role")
    op.drop_table("roster_classes")
