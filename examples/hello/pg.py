"""Tiny PostgreSQL access through the `psql` client (stdlib only, no driver).

Connection parameters are parsed from DATABASE_URL and handed to psql through
its environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE), never on the
command line, so the password does not show up in `ps`.
"""

import os
import subprocess
import urllib.parse

PSQL = os.environ.get("PSQL", "psql")

# One statement list shared by the web app and the worker. Two replicas may run
# CREATE TABLE IF NOT EXISTS at the same moment on a fresh database; the loser
# gets a unique violation on pg_type, which run() absorbs by retrying once.
SCHEMA = """
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS visits (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    release text,
    replica text
);
"""


class DatabaseError(Exception):
    pass


def configured():
    return bool(os.environ.get("DATABASE_URL"))


def _env():
    url = os.environ.get("DATABASE_URL", "")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise DatabaseError("DATABASE_URL is not a postgres:// URL")
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    # Drop inherited libpq settings so only the URL decides where we connect.
    for key in list(env):
        if key.startswith("PG"):
            del env[key]
    unquote = urllib.parse.unquote
    if parts.hostname:
        env["PGHOST"] = parts.hostname
    if parts.port:
        env["PGPORT"] = str(parts.port)
    if parts.username:
        env["PGUSER"] = unquote(parts.username)
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
    dbname = unquote(parts.path.lstrip("/"))
    if dbname:
        env["PGDATABASE"] = dbname
    query = urllib.parse.parse_qs(parts.query)
    if "sslmode" in query:
        env["PGSSLMODE"] = query["sslmode"][-1]
    env["PGCONNECT_TIMEOUT"] = "3"
    env["PGAPPNAME"] = os.environ.get("BERTH_REPLICA", "hello")
    return env


def run(sql, variables=None, timeout=10.0):
    """Run an SQL script with psql; return its unaligned, tuples-only output lines.

    `variables` become psql variables (-v name=value) that the script can use
    as :'name' (a safely quoted literal); their values are not secrets.
    """
    cmd = [PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-qAt"]
    for name, value in (variables or {}).items():
        cmd += ["-v", f"{name}={value}"]
    env = _env()
    last = None
    for _attempt in range(2):
        try:
            proc = subprocess.run(
                cmd, input=sql, env=env, capture_output=True, text=True, timeout=timeout
            )
        except FileNotFoundError:
            raise DatabaseError(f"{PSQL} not found")
        except subprocess.TimeoutExpired:
            raise DatabaseError(f"psql timed out after {timeout}s")
        if proc.returncode == 0:
            return [line for line in proc.stdout.splitlines() if line]
        last = proc.stderr.strip() or f"psql exited with {proc.returncode}"
    raise DatabaseError(last)


def record_visit(release, replica):
    """Insert one visit; return the new total."""
    lines = run(
        SCHEMA
        + "INSERT INTO visits (release, replica) VALUES (:'release', :'replica');\n"
        + "SELECT count(*) FROM visits;\n",
        {"release": release, "replica": replica},
    )
    return int(lines[-1])


def count_visits(timeout=10.0):
    lines = run(SCHEMA + "SELECT count(*) FROM visits;\n", timeout=timeout)
    return int(lines[-1])
