"""The program the `prefect-migrate` container runs (components/server/server.py): bring the
database schema up to the image's Prefect version, one task at a time, then exit with the
upgrade's code.

It runs in the server image as `python -c <this file's text>`, with the standard library and
asyncpg (Prefect's PostgreSQL driver). Its input is the `PREFECT_SERVER_DATABASE_*` environment
(host, port, user, password, name). Every task of every server service runs it before Prefect
starts; a PostgreSQL advisory lock lets one migrate while the others wait, and the others then
find nothing to do.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any, Mapping

import asyncpg

# Any constant shared by every migrating task; "prefect" in ASCII.
LOCK = 0x70726566656374
# How long a task waits for another task's migration before it fails (the deployment circuit
# breaker then rolls back): an upgrade takes 8 s idle, about 80 s loaded.
LOCK_WAIT_SECONDS = 900
LOCK_POLL_SECONDS = 2
CONNECT_WAIT_SECONDS = 300
CONNECT_RETRY_SECONDS = 5
UPGRADE = ("prefect", "server", "database", "upgrade", "-y")


def log(level: str, message: str, **extra: Any) -> None:
    print(json.dumps({"level": level, "name": "prefect.migrate", "message": message, **extra}),
          flush=True)


async def connect(env: Mapping[str, str]) -> asyncpg.Connection:
    """The database may still be starting (a new RDS instance, a failover): wait for it."""
    deadline = time.monotonic() + CONNECT_WAIT_SECONDS
    while True:
        try:
            return await asyncpg.connect(
                host=env["PREFECT_SERVER_DATABASE_HOST"],
                port=int(env["PREFECT_SERVER_DATABASE_PORT"]),
                user=env["PREFECT_SERVER_DATABASE_USER"],
                password=env["PREFECT_SERVER_DATABASE_PASSWORD"],
                database=env["PREFECT_SERVER_DATABASE_NAME"], timeout=10)
        except (OSError, asyncpg.CannotConnectNowError, asyncio.TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            log("INFO", "waiting for the database", reason=type(exc).__name__)
            await asyncio.sleep(CONNECT_RETRY_SECONDS)


async def take_lock(connection: asyncpg.Connection, wait_seconds: float = LOCK_WAIT_SECONDS) -> bool:
    """Polled, never waited for inside a statement: a session blocked in pg_advisory_lock() holds
    a snapshot, and the upgrade's CREATE INDEX CONCURRENTLY waits for every older snapshot, so a
    blocking wait deadlocks with the holder's own upgrade. Between tries this session is idle, in
    no transaction."""
    deadline = time.monotonic() + wait_seconds
    while not await connection.fetchval("SELECT pg_try_advisory_lock($1)", LOCK):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(LOCK_POLL_SECONDS)
    return True


async def migrate(env: Mapping[str, str], command: tuple[str, ...] = UPGRADE) -> int:
    connection = await connect(env)
    try:
        log("INFO", "waiting for the migration lock")
        if not await take_lock(connection):
            log("ERROR", "the migration lock stayed taken", waited_s=LOCK_WAIT_SECONDS)
            return 1
        log("INFO", "migrating")
        process = await asyncio.create_subprocess_exec(*command)
        code = await process.wait()
        log("INFO" if code == 0 else "ERROR", "migration finished", exit_code=code)
        return code
    finally:
        await connection.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(migrate(os.environ)))
