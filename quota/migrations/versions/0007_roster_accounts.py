"""Students imported from a teacher's CSV roster (quota.tables.RosterAccount).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "roster_accounts",
        sa.Column("account", sa.String(63), primary_key=True),
        sa.Column("school", sa.String(63), nullable=False),
        sa.Column("class_id", sa.String(63), nullable=False),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("email", sa.String(200), nullable=False),
        sa.Column("one_time_hash", sa.String(100), nullable=True),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_roster_accounts_school", "roster_accounts", ["school"])


def downgrade() -> None:
    op.drop_index("ix_roster_accounts_school", "roster_accounts")
    op.drop_table("roster_accounts")
