"""Real PostgreSQL and Redis for the slow tier, each on a free 127.0.0.1 port, stopped by its PID.

The API, stable for every test that needs a database:

    with postgres(password="...", ssl=False) as pg:     # Postgres(host, port, user, password,
        pg.url                                          #   database, pid, url, ssl, stop())
        pg.create_database("other")                     # a fresh database on the same server
        pg.sql("SELECT 1")                              # psql -At output, as text
        pg.set_password("new")                          # what a secret rotation does to the role
        pg.rds_database(user, password, "prefect")      # an RDS master user and its database
        pg.ca_file                                      # with ssl: the CA a verifying client trusts
    with redis(password="...", tls=False) as rd:        # Redis(host, port, password, pid, url,
        rd.command("PING")                              #   tls, ca_file, stop()); RESP client
    postgres_server / redis_server                      # session fixtures, one server each

PostgreSQL comes from Debian's `postgresql` package (`/usr/lib/postgresql/<major>/bin`) and refuses
to run as root: under root, `initdb` and `postgres` run as the `postgres` user in a temporary
directory it owns (`Popen(user=...)`, so the PID we hold is the postmaster's own). The superuser
logs in with a password over TCP only (`scram-sha-256`); `ssl=True` makes the server refuse
every connection that is not TLS, as RDS does with `rds.force_ssl`. Redis reads its password from
a config file (mode 600), never from its command line, where `ps` would show it; `tls=True`
serves TLS only, as ElastiCache with in-transit encryption does, with a self-signed certificate
for 127.0.0.1 at `ca_file` (a client trusts it through `SSL_CERT_FILE`, as a container trusts the
public CAs that sign AWS's).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from testbed.servers import free_port, stop

PG_BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
# The user PostgreSQL runs as when the tests run as root.
PG_OS_USER = "postgres"


def _pg_bin() -> Path:
    if not PG_BINARIES:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")
    return PG_BINARIES[0].parent


def _run_as() -> Optional[str]:
    """The OS user for initdb/postgres: `postgres` under root, else ourselves."""
    if os.geteuid() != 0:
        return None
    pwd.getpwnam(PG_OS_USER)  # KeyError: the package creates this user
    return PG_OS_USER


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    password: str
    database: str
    pid: int
    ssl: bool
    data_dir: Path
    log_path: Path
    _process: subprocess.Popen = field(repr=False)

    @property
    def url(self) -> str:
        """A libpq URL for the default database (password URL-encoded)."""
        return self.url_for(self.database)

    def url_for(self, database: str, driver: str = "postgresql") -> str:
        credentials = f"{urllib.parse.quote(self.user, safe='')}:" \
                      f"{urllib.parse.quote(self.password, safe='')}"
        return f"{driver}://{credentials}@{self.host}:{self.port}/{database}"

    @property
    def ca_file(self) -> Optional[Path]:
        """With TLS, the server's certificate, for 127.0.0.1 and its own CA: what a client that
        verifies (chain and host name) must trust; None without TLS."""
        return self.data_dir / "server.crt" if self.ssl else None

    def __repr__(self) -> str:  # never the password
        return f"Postgres(host={self.host!r}, port={self.port}, user={self.user!r}, " \
               f"database={self.database!r}, pid={self.pid}, ssl={self.ssl})"

    def sql(self, query: str, database: Optional[str] = None, *, user: Optional[str] = None,
            password: Optional[str] = None, sslmode: Optional[str] = None,
            check: bool = True, timeout: float = 30) -> str:
        """`psql -At` over TCP as `user` (the superuser by default); the output's text, or with
        `check=False` the error text. The password goes in PGPASSWORD, never in argv."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "PGPASSWORD": self.password if password is None else password,
               "PGSSLMODE": sslmode or ("require" if self.ssl else "prefer"),
               "PGCONNECT_TIMEOUT": "5"}
        result = subprocess.run(
            [str(_pg_bin() / "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
             "-h", self.host, "-p", str(self.port), "-U", user or self.user,
             "-d", database or self.database, "-c", query],
            env=env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout.strip() if result.returncode == 0 else result.stderr.strip()

    def create_database(self, name: str, owner: Optional[str] = None) -> str:
        self.sql(f'CREATE DATABASE "{name}" OWNER "{owner or self.user}"')
        return name

    def create_role(self, name: str, password: str) -> str:
        """A login role that is no superuser, as RDS's master user is not."""
        self.sql(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{_sql_literal(password)}'")
        return name

    def set_password(self, password: str, role: Optional[str] = None) -> None:
        """Change a role's password (the superuser's by default), as a secret rotation does."""
        self.sql(f"ALTER ROLE \"{role or self.user}\" PASSWORD '{_sql_literal(password)}'")
        if role is None or role == self.user:
            self.password = password

    def rds_database(self, user: str, password: str, database: str) -> None:
        """What RDS creates for an instance: its master user, a login role that is no superuser,
        with this password, and an empty database it owns (any earlier one of that name is
        dropped, its connections closed)."""
        self.sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        exists = self.sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{_sql_literal(user)}'")
        verb = "ALTER" if exists else "CREATE"
        self.sql(f"{verb} ROLE \"{user}\" LOGIN NOSUPERUSER CREATEDB CREATEROLE "
                 f"PASSWORD '{_sql_literal(password)}'")
        self.create_database(database, owner=user)

    def tables(self, database: str, schema: str = "public") -> set[str]:
        rows = self.sql("SELECT tablename FROM pg_tables WHERE schemaname = "
                        f"'{_sql_literal(schema)}'", database)
        return set(rows.split()) if rows else set()

    def stop(self) -> Optional[int]:
        """Fast shutdown (SIGINT) of the postmaster by PID, then remove its data directory."""
        code = stop(self._process, 20, signal.SIGINT)
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)
        return code

    def __enter__(self) -> "Postgres":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _sql_literal(value: str) -> str:
    return value.replace("'", "''")


def self_signed_ca(directory: Path) -> Path:
    """A certificate authority of our own for 127.0.0.1 (no server uses it): `server.crt` in
    `directory`, for a client that must be refused."""
    directory.mkdir(parents=True, exist_ok=True)
    _self_signed(directory, None)
    return directory / "server.crt"


def _self_signed(directory: Path, owner: Optional[str]) -> None:
    """server.crt / server.key in `directory`: a certificate for 127.0.0.1 (CN and SAN)."""
    subprocess.run(["openssl", "req", "-new", "-x509", "-days", "2", "-nodes", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-newkey", "rsa:2048", "-keyout", str(directory / "server.key"),
                    "-out", str(directory / "server.crt")],
                   check=True, capture_output=True, timeout=60)
    os.chmod(directory / "server.key", 0o600)
    if owner:
        for name in ("server.key", "server.crt"):
            shutil.chown(directory / name, owner, owner)


def start_postgres(password: Optional[str] = None, *, user: str = "prefect",
                   database: str = "prefect", ssl: bool = False,
                   max_connections: int = 200) -> Postgres:
    """A fresh cluster: `user` is its superuser with `password` (random if None), `database`
    exists and is owned by it."""
    password = password if password is not None else secrets.token_urlsafe(24)
    bin_dir = _pg_bin()
    owner = _run_as()
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    data_dir, socket_dir = root / "data", root / "sock"
    data_dir.mkdir()
    socket_dir.mkdir()
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    os.chmod(pwfile, 0o600)
    if owner:
        for path in (root, data_dir, socket_dir, pwfile):
            shutil.chown(path, owner, owner)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "HOME": str(root)}
    try:
        subprocess.run([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", user,
                        "--pwfile", str(pwfile), "--auth-local=scram-sha-256",
                        "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"],
                       user=owner, group=owner, extra_groups=[] if owner else None, env=env,
                       check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as error:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {error.stderr.decode(errors='replace')}") from None
    finally:
        pwfile.unlink(missing_ok=True)
    if ssl:
        _self_signed(data_dir, owner)
        (data_dir / "pg_hba.conf").write_text(
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all 0.0.0.0/0 reject\n")
    port = free_port()
    log_path = root / "postgres.log"
    log = open(log_path, "wb")
    if owner:
        shutil.chown(log_path, owner, owner)
    settings = {"listen_addresses": "127.0.0.1", "port": str(port),
                "unix_socket_directories": str(socket_dir), "max_connections": str(max_connections),
                "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                "ssl": "on" if ssl else "off"}
    command = [str(bin_dir / "postgres"), "-D", str(data_dir)]
    for key, value in settings.items():
        command += ["-c", f"{key}={value}"]
    process = subprocess.Popen(command, user=owner, group=owner,
                               extra_groups=[] if owner else None, env=env, stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    log.close()
    server = Postgres("127.0.0.1", port, user, password, "postgres", process.pid, ssl, data_dir,
                      log_path, process)
    try:
        _wait_for_postgres(server, process)
        if database != "postgres":
            server.create_database(database)
            server.database = database
    except BaseException:
        server.stop()
        raise
    return server


def _wait_for_postgres(server: Postgres, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited with {process.returncode}: "
                               f"{server.log_path.read_text(errors='replace')[-2000:]}")
        ready = subprocess.run([str(_pg_bin() / "pg_isready"), "-q", "-h", server.host,
                                "-p", str(server.port)], timeout=10)
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    raise TimeoutError(f"postgres on port {server.port} not ready within {timeout}s")


@dataclass
class Redis:
    host: str
    port: int
    password: Optional[str]
    pid: int
    log_path: Path
    _process: subprocess.Popen = field(repr=False)
    _root: Path = field(repr=False)
    tls: bool = False

    @property
    def ca_file(self) -> Optional[Path]:
        """The self-signed certificate a TLS client must trust (None without TLS)."""
        return self._root / "server.crt" if self.tls else None

    @property
    def url(self) -> str:
        """`redis://:password@host:port/0` (`rediss://` with TLS; the password URL-encoded)."""
        auth = f":{urllib.parse.quote(self.password, safe='')}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}{self.host}:{self.port}/0"

    def __repr__(self) -> str:  # never the password
        return f"Redis(host={self.host!r}, port={self.port}, pid={self.pid})"

    def command(self, *args: str, password: Optional[str] = None):
        """One command over a new connection (AUTH first when there is a password)."""
        with socket.create_connection((self.host, self.port), timeout=5) as raw:
            sock = raw
            if self.tls:
                context = ssl.create_default_context(cafile=str(self.ca_file))
                sock = context.wrap_socket(raw, server_hostname=self.host)
            reader = sock.makefile("rb")
            secret = self.password if password is None else password
            if secret:
                sock.sendall(_resp("AUTH", secret))
                reply = _read_resp(reader)
                if isinstance(reply, RedisError):
                    return reply
            sock.sendall(_resp(*args))
            return _read_resp(reader)

    def stop(self) -> Optional[int]:
        code = stop(self._process, 15)
        shutil.rmtree(self._root, ignore_errors=True)
        return code

    def __enter__(self) -> "Redis":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class RedisError(str):
    """An error reply (`-ERR ...`, `-NOAUTH ...`), returned rather than raised."""


def _resp(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else bytes(arg)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_resp(reader):
    line = reader.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read_resp(reader) for _ in range(size)]
    raise ValueError(f"unexpected RESP reply {line!r}")


def start_redis(password: Optional[str] = None, *, tls: bool = False) -> Redis:
    """`redis-server` with no persistence; `password=None` makes a random one, `""` none;
    `tls=True` serves TLS only."""
    password = secrets.token_urlsafe(24) if password is None else password
    root = Path(tempfile.mkdtemp(prefix="redis-"))
    port = free_port()
    config = root / "redis.conf"
    lines = [f"port {0 if tls else port}", "bind 127.0.0.1", f"dir {root}", 'save ""',
             "appendonly no", "daemonize no", "protected-mode yes"]
    if tls:
        _self_signed(root, None)
        lines += [f"tls-port {port}", f"tls-cert-file {root / 'server.crt'}",
                  f"tls-key-file {root / 'server.key'}", f"tls-ca-cert-file {root / 'server.crt'}",
                  "tls-auth-clients no"]
    if password:
        lines.append(f'requirepass "{password}"')
    config.write_text("\n".join(lines) + "\n")
    os.chmod(config, 0o600)
    log_path = root / "redis.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([REDIS_SERVER, str(config)], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    server = Redis("127.0.0.1", port, password or None, process.pid, log_path, process, root, tls)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}: "
                               f"{log_path.read_text(errors='replace')[-2000:]}")
        try:
            if server.command("PING") == "PONG":
                return server
        except (OSError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise TimeoutError(f"redis-server on port {port} not ready within 30s")
        time.sleep(0.05)


def postgres(password: Optional[str] = None, **kwargs) -> Postgres:
    """`start_postgres`; the result is its own context manager (`with postgres() as pg:`)."""
    return start_postgres(password, **kwargs)


def redis(password: Optional[str] = None, **kwargs) -> Redis:
    """`start_redis`; the result is its own context manager (`with redis() as rd:`)."""
    return start_redis(password, **kwargs)
