"""The program of every server task's first container, `prefect-migrate` (components/server/server.py runs
this file's text as `python -c`): the only process that holds the RDS master password.

1. It trusts the stack region's RDS root CAs only: it writes `DATABASE_CA_BUNDLE` (PEM text) to the
   file Prefect's TLS setting names and connects with full verification (certificate chain and
   host name), as Prefect itself then does. A certificate the bundle does not sign stops it at once
   with one ERROR line, never a retry.
2. As the master user, it takes a PostgreSQL advisory lock on its own connection, polling
   `pg_try_advisory_lock(MIGRATION_LOCK)` every 2 s (never a blocking `pg_advisory_lock()`: a
   session waiting inside that statement holds a snapshot, which the upgrade's `CREATE INDEX
   CONCURRENTLY` waits for, so the holder's upgrade and the waiters would deadlock). Tasks that
   start together are serialized: the first one migrates, each one after it finds the schema at
   head and does nothing. Prefect's own guard is an in-process lock only (three replicas migrating
   one empty database at once: two died with UniqueViolationError).
3. Holding it, it hands the database to the server's role (`hand_over`): creates the role with no
   attribute but LOGIN (or sets its password to the secret's current value, so changing that
   secret and starting new tasks rotates it), makes the master a member (PostgreSQL lets a role
   give objects only to roles it can act as), gives the role the database (so its `public`
   schema), and whatever the master owned in that schema (a database migrated by the master
   before). The password is sent as a SCRAM-SHA-256 verifier, never as text a statement log
   could show.
4. Then it runs `prefect server database upgrade -y` as a subprocess, connected as the server's
   role: an environment without the master's user and password. Prefect's migrations create
   `pg_trgm`, a trusted extension the database owner may create.

Only the standard library and asyncpg, which the Prefect image has; asyncpg is imported inside
`main` so that the stack program can import the constants.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import ssl
import sys
import time
from typing import Any, Mapping, Optional

# Any constant shared by every migrating task; "prefect" in ASCII.
MIGRATION_LOCK = 0x70726566656374
# The longest migration the ECS limits let finish (docs/self-hosted-server.md, "Upgrades"):
# measured here at under 30 s on 10,000 runs and 100,000 events (bench/results/upgrade.json), but
# Prefect's issues report 30+ minutes on large event tables (PrefectHQ/prefect#17844, #18263).
# Nothing else may give up sooner (components/server/server.py says how each limit keeps to it).
MIGRATION_BOUND_SECONDS = 3600
# How long a task's prefect-migrate waits for another task's migration before its task fails (the
# deployment circuit breaker then rolls back): longer than the bound, so a task queued behind a
# long migration never fails (and counts against the circuit breaker) while it still runs, plus
# 10 minutes for its own start.
MIGRATION_LOCK_WAIT_SECONDS = MIGRATION_BOUND_SECONDS + 600
LOCK_POLL_SECONDS = 2
CONNECT_WAIT_SECONDS = 300

# The database's CA bundle as text, and the file Prefect's TLS setting reads it from.
CA_BUNDLE_ENV = "DATABASE_CA_BUNDLE"
CA_FILE_ENV = "PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_TLS_CA_FILE"
# Only this container gets these (the master password through ECS `secrets`).
MASTER_USER_ENV = "DATABASE_MASTER_USER"
MASTER_PASSWORD_ENV = "DATABASE_MASTER_PASSWORD"
SCRAM_ITERATIONS = 4096

# Objects the master owns in the public schema, each as the statement that gives it to %I (the
# server's role): tables, views and sequences not owned by a column (those follow their table),
# enum, domain and composite types, and functions; none that belongs to an extension.
OWNED_BY_MASTER = """
SELECT format('ALTER %s %s OWNER TO %I', kind, object, $1::text) FROM (
  SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                        WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END AS kind,
         c.oid::regclass::text AS object
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relowner = current_user::regrole
    AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                    AND d.objid = c.oid AND d.deptype IN ('a', 'i', 'e'))
  UNION ALL
  SELECT 'TYPE', t.oid::regtype::text
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE n.nspname = 'public' AND t.typowner = current_user::regrole
    AND (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND
         (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                    AND d.objid = t.oid AND d.deptype = 'e')
  UNION ALL
  SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.oid::regprocedure::text
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = 'public' AND p.proowner = current_user::regrole AND p.prokind IN ('f', 'p')
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                    AND d.objid = p.oid AND d.deptype = 'e')
) AS owned
"""


def log(level: str, message: str, **extra: Any) -> None:
    print(json.dumps({"level": level, "name": "prefect.migrate", "message": message, **extra}),
          flush=True)


def scram_verifier(password: str, salt: Optional[bytes] = None,
                   iterations: int = SCRAM_ITERATIONS) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802/7677), as psql's \\password
    computes it: sent instead of the password, a statement log never holds the password."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def trust(env: Mapping[str, str]) -> ssl.SSLContext:
    """Write the CA bundle where Prefect's setting names it; a context that verifies against it
    only (chain and host name), TLS 1.2 or newer, as Prefect builds its own."""
    path = env[CA_FILE_ENV]
    with open(path, "w") as handle:
        handle.write(env[CA_BUNDLE_ENV])
    context = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cafile=path)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def connect(env: Any, user: str, password: str, context: ssl.SSLContext) -> Any:
    import asyncpg

    deadline = time.monotonic() + CONNECT_WAIT_SECONDS
    while True:
        try:
            return await asyncpg.connect(
                host=env["PREFECT_SERVER_DATABASE_HOST"],
                port=int(env["PREFECT_SERVER_DATABASE_PORT"]),
                user=user, password=password,
                database=env["PREFECT_SERVER_DATABASE_NAME"], ssl=context, timeout=10)
        except ssl.SSLError:
            raise  # a certificate the bundle does not sign: waiting will not change it
        except (OSError, asyncpg.CannotConnectNowError, asyncio.TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            log("INFO", "waiting for the database", reason=type(exc).__name__)
            await asyncio.sleep(5)


async def take_lock(connection: Any, wait_seconds: float = MIGRATION_LOCK_WAIT_SECONDS) -> bool:
    """Polled, never waited for inside a statement: a session blocked in pg_advisory_lock() holds
    a snapshot, and the upgrade's CREATE INDEX CONCURRENTLY waits for every older snapshot, so a
    blocking wait deadlocks with the holder's own upgrade. Between tries this session is idle, in
    no transaction."""
    deadline = time.monotonic() + wait_seconds
    while not await connection.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(LOCK_POLL_SECONDS)
    return True


async def hand_over(master: Any, role: str, password: str, database: str) -> None:
    """The server's role, with this password, owning `database` and what the master had in its
    public schema; nothing else (run as the master, under the migration lock)."""
    verb = "ALTER" if await master.fetchval(
        "SELECT 1 FROM pg_roles WHERE rolname = $1", role) else "CREATE"
    await master.execute(await master.fetchval(
        f"SELECT format('{verb} ROLE %I WITH LOGIN PASSWORD %L', $1::text, $2::text)",
        role, scram_verifier(password)))
    await master.execute(await master.fetchval(
        "SELECT format('GRANT %I TO %I', $1::text, current_user)", role))
    await master.execute(await master.fetchval(
        "SELECT format('ALTER DATABASE %I OWNER TO %I', $1::text, $2::text)", database, role))
    for (statement,) in await master.fetch(OWNED_BY_MASTER, role):
        await master.execute(statement)


async def main() -> int:
    import asyncpg

    env = os.environ
    role = env["PREFECT_SERVER_DATABASE_USER"]
    context = trust(env)
    try:
        master = await connect(env, env[MASTER_USER_ENV], env[MASTER_PASSWORD_ENV], context)
    except ssl.SSLError as exc:
        log("ERROR", "the database's certificate is not signed by the RDS CA bundle "
                     f"({CA_BUNDLE_ENV}); refusing to connect", reason=str(exc))
        return 1
    try:
        log("INFO", "waiting for the migration lock")
        if not await take_lock(master):
            log("ERROR", "the migration lock stayed taken", waited_s=MIGRATION_LOCK_WAIT_SECONDS)
            return 1
        try:
            await hand_over(master, role, env["PREFECT_SERVER_DATABASE_PASSWORD"],
                            env["PREFECT_SERVER_DATABASE_NAME"])
        except asyncpg.PostgresError as exc:
            log("ERROR", "could not give the database to the server's role", role=role,
                reason=f"{type(exc).__name__}: {exc}")
            return 1
        log("INFO", "migrating", role=role)
        # The upgrade connects as the server's role: the master's credentials stay here.
        child_env = {k: v for k, v in env.items() if k not in (MASTER_USER_ENV, MASTER_PASSWORD_ENV)}
        process = await asyncio.create_subprocess_exec(
            "prefect", "server", "database", "upgrade", "-y", env=child_env)
        code = await process.wait()
        log("INFO" if code == 0 else "ERROR", "migration finished", exit_code=code)
        return code
    finally:
        await master.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
