"""The hello app's migration, run by `berth deploy` once per deploy before traffic moves
(`[service.web.deploy] migrate = "python3 migrate.py"`), from the new release's folder with the
service's env. It only ever adds (backward-compatible: the old release keeps working with the
new schema). MIGRATE_FAIL=1 makes it fail, to see a deploy stop before any traffic moves.
"""

import os
import sys

import pg

MIGRATIONS = [
    ("0001_visits", pg.SCHEMA),
    (
        "0002_visits_at_index",
        "CREATE INDEX IF NOT EXISTS visits_at ON visits (at);",
    ),
]


def main():
    if os.environ.get("MIGRATE_FAIL", "") not in ("", "0", "false", "no"):
        print("migrate: MIGRATE_FAIL is set: failing on purpose", file=sys.stderr)
        return 3
    if not pg.configured():
        print("migrate: no DATABASE_URL; nothing to migrate")
        return 0
    pg.run(
        "SET client_min_messages = warning;"
        "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());"
    )
    done = set(pg.run("SELECT name FROM schema_migrations;"))
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        pg.run(sql + f"\nINSERT INTO schema_migrations (name) VALUES ('{name}') ON CONFLICT DO NOTHING;")
        print(f"migrate: applied {name}")
    print("migrate: schema up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
