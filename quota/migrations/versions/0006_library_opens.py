"""How often each library entry is opened, per class (quota.tables.LibraryOpen).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "library_opens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entry", sa.String(63), nullable=False),
        sa.Column("school", sa.String(63), nullable=False),
        sa.Column("class_id", sa.String(63), nullable=False),
        sa.Column("opens", sa.Integer, nullable=False),
    )
    op.create_index("ix_library_opens_at", "library_opens", ["at"])


def downgrade() -> None:
    op.drop_index("ix_library_opens_at", "library_opens")
    op.drop_table("library_opens")
