"""The usage ledger is append-only: the database refuses to change or delete a record.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MESSAGE = "usage records are append-only"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""CREATE FUNCTION usage_append_only() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION '{MESSAGE}'; END; $$ LANGUAGE plpgsql"""
        )
        op.execute("CREATE TRIGGER usage_no_update BEFORE UPDATE OR DELETE ON usage FOR EACH ROW EXECUTE FUNCTION usage_append_only()")
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER usage_no_{event.lower()} BEFORE {event} ON usage "
                f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER usage_no_update ON usage")
        op.execute("DROP FUNCTION usage_append_only()")
    else:
        op.execute("DROP TRIGGER usage_no_update")
        op.execute("DROP TRIGGER usage_no_delete")
