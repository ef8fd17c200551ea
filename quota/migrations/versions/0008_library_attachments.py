"""Library entries teachers attach to a class on their page (quota.tables.LibraryAttachment).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "library_attachments",
        sa.Column("school", sa.String(63), primary_key=True),
        sa.Column("class_id", sa.String(63), primary_key=True),
        sa.Column("entry", sa.String(63), primary_key=True),
        sa.Column("attached_by", sa.String(100), nullable=False),
        sa.Column("attached_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("library_attachments")
