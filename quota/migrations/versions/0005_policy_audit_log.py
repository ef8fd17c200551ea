"""The audit log of policy changes: who changed which tier's, school's or pool's setting,
when, from what to what. Append-only: the database refuses to change or delete a row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

MESSAGE = "the policy audit log is append-only"


def upgrade() -> None:
    op.create_table(
        "policy_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(20), nullable=False),
        sa.Column("target", sa.String(100), nullable=False),
        sa.Column("field", sa.String(50), nullable=False),
        sa.Column("old", sa.Text, nullable=True),
        sa.Column("new", sa.Text, nullable=True),
    )
    op.create_index("ix_policy_changes_at", "policy_changes", ["at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""CREATE FUNCTION policy_changes_append_only() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION '{MESSAGE}'; END; $$ LANGUAGE plpgsql"""
        )
        op.execute("CREATE TRIGGER policy_changes_no_update BEFORE UPDATE OR DELETE ON policy_changes "
                   "FOR EACH ROW EXECUTE FUNCTION policy_changes_append_only()")
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER policy_changes_no_{event.lower()} BEFORE {event} ON policy_changes "
                f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER policy_changes_no_update ON policy_changes")
        op.execute("DROP FUNCTION policy_changes_append_only()")
    op.drop_index("ix_policy_changes_at", "policy_changes")
    op.drop_table("policy_changes")
