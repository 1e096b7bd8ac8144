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

PostgreSQL and Valkey (the Redis server) come from wheels in the venv (`testbed/binaries.py`,
the one place that says where). PostgreSQL refuses to run as root: under root, `initdb` and
`postgres` run as `nobody` in a temporary directory it alone may enter (`Popen(user=...)`, so the
PID we hold is the postmaster's own). `nobody` exists on every Linux system and owns nothing else
here, so no user is created or needed from a distribution's package; when the venv lies where
`nobody` may not go (a clone under /root), the PostgreSQL installation is copied to a temporary
directory it can read, once per process. The superuser logs in with a password over TCP only
(`scram-sha-256`); `ssl=True` makes the server refuse every connection that is not TLS, as RDS does
with `rds.force_ssl`. Redis reads its password from a config file (mode 600), never from its
command line, where `ps` would show it. `tls=True` serves TLS only, as ElastiCache with in-transit
encryption does: Valkey's wheel has no TLS, so the server listens on a Unix socket only (no TCP
port) and `testbed/tls_proxy.py`, stopped by its PID with the server, terminates TLS on the port.
Certificates are made with `cryptography`: a throwaway CA, whose certificate is at `ca_file` (a
client trusts it through `SSL_CERT_FILE`, as a container trusts the public CAs that sign AWS's),
and a server certificate for 127.0.0.1 it signs.
"""

from __future__ import annotations

import atexit
import datetime
import ipaddress
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from testbed import binaries
from testbed.servers import free_port, stop

# The OS user PostgreSQL runs as when the tests run as root; its ids when no passwd entry names it
# (65534 is the kernel's overflow id, `nobody` on every distribution).
PG_OS_USER = "nobody"
PG_OS_IDS = (65534, 65534)
# The checkout, from which `python -m testbed.tls_proxy` runs.
CHECKOUT = Path(__file__).resolve().parent.parent


def _run_as() -> Optional[tuple[int, int]]:
    """(uid, gid) for initdb/postgres: `nobody`'s under root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_OS_USER)
    except KeyError:
        return PG_OS_IDS
    return entry.pw_uid, entry.pw_gid


def _reachable_by_others(path: Path) -> bool:
    """Whether a user with no rights of its own may reach `path`: every directory above it
    searchable (o+x)."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


@cache
def _pg_bin() -> Path:
    """The PostgreSQL binaries `postgres` can run from: the wheel's, or under root, if `nobody`
    cannot reach the venv, a copy of the installation it can read (removed at exit)."""
    root = binaries.postgres_root()
    if os.geteuid() != 0 or _reachable_by_others(root):
        return root / "bin"
    copy = Path(tempfile.mkdtemp(prefix="pginstall-"))
    os.chmod(copy, 0o755)
    atexit.register(shutil.rmtree, copy, True)
    shutil.copytree(root, copy / "pginstall", symlinks=True)
    return copy / "pginstall" / "bin"


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
        """With TLS, the CA that signed the server's certificate (for 127.0.0.1): what a client
        that verifies (chain and host name) must trust; None without TLS."""
        return self.data_dir / "ca.crt" if self.ssl else None

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
    """A certificate authority of our own for 127.0.0.1 (no server uses it): its certificate,
    `ca.crt` in `directory`, for a client that must be refused."""
    directory.mkdir(parents=True, exist_ok=True)
    _certificates(directory, None)
    return directory / "ca.crt"


def _certificates(directory: Path, owner: Optional[tuple[int, int]]) -> None:
    """In `directory`: `ca.crt`, a throwaway CA's certificate (its key is not kept), and
    `server.crt` / `server.key` (mode 600), a certificate for 127.0.0.1 (CN and SAN) it signs."""
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=2))
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "prefect-ecs-worker test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(valid[0]).not_valid_after(valid[1])
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                         critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
              .issuer_name(ca_name).public_key(key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(valid[0]).not_valid_after(valid[1])
              .add_extension(x509.SubjectAlternativeName(
                  [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                             critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                  ca_ski), critical=False)
              .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / "server.crt").write_bytes(server.public_bytes(pem))
    key_path = directory / "server.key"
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    if owner:
        for name in ("ca.crt", "server.key", "server.crt"):
            os.chown(directory / name, *owner)


def _as_user(owner: Optional[tuple[int, int]]) -> dict:
    """Popen's arguments to run as `owner` (uid, gid) with no supplementary group; {} for None."""
    return {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}


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
            os.chown(path, *owner)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "HOME": str(root)}
    try:
        subprocess.run([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", user,
                        "--pwfile", str(pwfile), "--auth-local=scram-sha-256",
                        "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"],
                       **_as_user(owner), env=env,
                       check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as error:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {error.stderr.decode(errors='replace')}") from None
    finally:
        pwfile.unlink(missing_ok=True)
    if ssl:
        _certificates(data_dir, owner)
        (data_dir / "pg_hba.conf").write_text(
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all 0.0.0.0/0 reject\n")
    port = free_port()
    log_path = root / "postgres.log"
    log = open(log_path, "wb")
    if owner:
        os.chown(log_path, *owner)
    settings = {"listen_addresses": "127.0.0.1", "port": str(port),
                "unix_socket_directories": str(socket_dir), "max_connections": str(max_connections),
                "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                "ssl": "on" if ssl else "off"}
    command = [str(bin_dir / "postgres"), "-D", str(data_dir)]
    for key, value in settings.items():
        command += ["-c", f"{key}={value}"]
    process = subprocess.Popen(command, **_as_user(owner), env=env, stdout=log,
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
    # With TLS: the terminator on `port` (testbed/tls_proxy.py); `pid` stays the server's.
    _proxy: Optional[subprocess.Popen] = field(default=None, repr=False)

    @property
    def ca_file(self) -> Optional[Path]:
        """The CA certificate a TLS client must trust (None without TLS)."""
        return self._root / "ca.crt" if self.tls else None

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
        """The TLS terminator, then the server, each by its PID; then remove its directory."""
        if self._proxy is not None:
            stop(self._proxy, 10)
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
    """`valkey-server` with no persistence; `password=None` makes a random one, `""` none;
    `tls=True` serves TLS only: the server listens on a Unix socket in its directory (mode 700)
    and a TLS terminator on the TCP port."""
    password = secrets.token_urlsafe(24) if password is None else password
    root = Path(tempfile.mkdtemp(prefix="redis-"))
    port = free_port()
    config = root / "redis.conf"
    backend = root / "redis.sock"
    lines = [f"port {0 if tls else port}", "bind 127.0.0.1", f"dir {root}", 'save ""',
             "appendonly no", "daemonize no", "protected-mode yes"]
    if tls:
        lines += [f"unixsocket {backend}", "unixsocketperm 700"]
    if password:
        lines.append(f'requirepass "{password}"')
    config.write_text("\n".join(lines) + "\n")
    os.chmod(config, 0o600)
    log_path = root / "redis.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(binaries.redis_server()), str(config)], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    server = Redis("127.0.0.1", port, password or None, process.pid, log_path, process, root, tls)
    processes = {"valkey-server": process}
    if tls:
        _certificates(root, None)
        with open(root / "tls-proxy.log", "wb") as log:
            server._proxy = subprocess.Popen(
                [sys.executable, "-m", "testbed.tls_proxy", "--port", str(port),
                 "--backend", str(backend), "--cert", str(root / "server.crt"),
                 "--key", str(root / "server.key")],
                cwd=CHECKOUT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        processes["tls_proxy"] = server._proxy
    deadline = time.monotonic() + 30
    while True:
        for name, each in processes.items():
            if each.poll() is not None:
                logs = "".join(p.read_text(errors="replace")[-2000:]
                               for p in sorted(root.glob("*.log")))
                server.stop()
                raise RuntimeError(f"{name} exited with {each.returncode}: {logs}")
        try:
            if server.command("PING") == "PONG":
                return server
        except (OSError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise TimeoutError(f"redis on port {port} not ready within 30s")
        time.sleep(0.05)


def postgres(password: Optional[str] = None, **kwargs) -> Postgres:
    """`start_postgres`; the result is its own context manager (`with postgres() as pg:`)."""
    return start_postgres(password, **kwargs)


def redis(password: Optional[str] = None, **kwargs) -> Redis:
    """`start_redis`; the result is its own context manager (`with redis() as rd:`)."""
    return start_redis(password, **kwargs)
