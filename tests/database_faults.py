"""Make the quota database itself refuse a write to the leases table, as a full disk would
(a trigger raising 'disk is full'), on SQLite and on PostgreSQL.

``refuse_lease_writes(url, "INSERT", True)`` installs it; the same call with ``False`` removes it.
"""

from __future__ import annotations

import sqlalchemy


def refuse_lease_writes(database_url: str, event: str, refuse: bool) -> None:
    name = f"refuse_lease_{event.lower()}"
    engine = sqlalchemy.create_engine(database_url)
    with engine.begin() as db:
        if engine.dialect.name == "sqlite":
            db.execute(sqlalchemy.text(
                f"CREATE TRIGGER {name} BEFORE {event} ON leases BEGIN SELECT RAISE(ABORT, 'disk is full'); END"
                if refuse else f"DROP TRIGGER {name}"))
        elif refuse:
            db.execute(sqlalchemy.text(
                f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk is full'; END $$ "
                "LANGUAGE plpgsql"))
            db.execute(sqlalchemy.text(
                f"CREATE TRIGGER {name} BEFORE {event} ON leases FOR EACH ROW EXECUTE FUNCTION {name}()"))
        else:
            db.execute(sqlalchemy.text(f"DROP TRIGGER {name} ON leases"))
            db.execute(sqlalchemy.text(f"DROP FUNCTION {name}()"))
    engine.dispose()
