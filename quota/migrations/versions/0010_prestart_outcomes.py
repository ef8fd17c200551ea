"""How each workspace started ahead of a lesson went, per reservation and student
(quota.tables.PrestartOutcome): ready, or failed with the reason as a catalogue message.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prestart_outcomes",
        sa.Column("reservation_id", sa.String(40), primary_key=True),
        sa.Column("account", sa.String(63), primary_key=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("prestart_outcomes")
