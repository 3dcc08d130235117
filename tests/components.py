"""Real external components for the test suite: PostgreSQL, MariaDB, Prometheus, Alertmanager.

Project rule: tests talk to the real programs, never to mocks.  The programs come from
Debian packages (``postgresql``, ``mariadb-server``, ``prometheus``, ``prometheus-alertmanager``).  When one
is missing, a test *fails* under CI (``CI=true``) and is *skipped* elsewhere, with a
message naming the Debian package to install (see :func:`require`).

Every helper runs its program in its own temporary directory, on a free port on
127.0.0.1, with stdout and stderr in a log file in that directory.  Start-up failures
raise :class:`ComponentError` including the tail of that log.  The processes are
stopped by ``stop()`` / ``close()`` / leaving the ``with`` block, and as a last resort
when the interpreter exits.

Usage::

    with PostgresServer() as pg:
        psycopg.connect(pg.dsn)          # or sqlalchemy.create_engine(pg.url)

    with MariaDBServer() as my:
        sqlalchemy.create_engine(my.url_for(my.createdb("city")))

    with Alertmanager() as am:           # minimal config unless one is given
        am.post_alerts([{"labels": {"alertname": "X"}}])
        am.alerts()

    with Prometheus(lambda p: {"scrape_configs": [...p.address...]}) as prom:
        prom.query_until("up == 1")

A config is YAML text, a mapping (written as JSON, which YAML reads), or a callable
receiving the component (so it can use ``.port`` / ``.address``) and returning either.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import glob
import http.client
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, NoReturn, Self, TypeVar

import pytest

__all__ = [
    "Alertmanager",
    "ComponentError",
    "Launcher",
    "MariaDBServer",
    "PostgresServer",
    "Prometheus",
    "free_port",
    "in_ci",
    "pg_bindir",
    "postgres_missing",
    "require",
    "wait_http",
]

LOCALHOST = "127.0.0.1"

# Local servers only: never go through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Debian installs some programs under another name than upstream does (or than older releases did).
_ALIASES: dict[str, tuple[str, ...]] = {
    "alertmanager": ("prometheus-alertmanager",),
    "mariadbd": ("mysqld",),
    "mariadb-install-db": ("mysql_install_db",),
}

# Server programs live in sbin, which is not in an ordinary user's PATH.
_SBIN = os.pathsep.join(("/usr/local/sbin", "/usr/sbin", "/sbin"))


class ComponentError(RuntimeError):
    """A real component could not be started or answered unexpectedly."""


# --------------------------------------------------------------------------- discovery


def in_ci() -> bool:
    """True when running under CI (``CI=true``, as set by the usual CI systems)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def missing(message: str) -> NoReturn:
    """Fail the test under CI, skip it elsewhere."""
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _version_key(bindir: str) -> tuple[int, ...]:
    version = Path(bindir).parent.name  # /usr/lib/postgresql/<version>/bin
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


@functools.cache
def pg_bindir() -> Path | None:
    """Directory holding the PostgreSQL server programs (initdb, postgres), or None.

    Debian keeps them out of PATH in /usr/lib/postgresql/<version>/bin.
    """
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(out.stdout.strip()))
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    candidates.extend(Path(d) for d in debian)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    return None


def find_program(program: str) -> str | None:
    """Path of ``program`` (PATH and sbin, then Debian's name for it, then the PostgreSQL bindir)."""
    for name in (program, *_ALIASES.get(program, ())):
        path = shutil.which(name) or shutil.which(name, path=_SBIN)
        if path:
            return path
    bindir = pg_bindir()
    if bindir is not None and (bindir / program).is_file():
        return str(bindir / program)
    return None


def require(program: str, package: str) -> str:
    """Return the path of ``program``; fail (CI) or skip (elsewhere) when it is missing."""
    path = find_program(program)
    if path is None:
        missing(f"{program} not found: install the Debian package {package}")
    return path


# --------------------------------------------------------------------------- network

_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (and not handed out before in this run)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOCALHOST, 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise ComponentError("could not find a free TCP port")


def _http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, bytes]:
    data = None
    headers = {}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _json(method: str, url: str, body: Any = None, *, ok: Iterable[int] = (200,)) -> Any:
    status, payload = _http(method, url, body)
    if status not in tuple(ok):
        raise ComponentError(f"{method} {url} answered HTTP {status}: {payload[:500]!r}")
    return json.loads(payload) if payload.strip() else None


def wait_http(
    url: str,
    timeout: float = 30.0,
    status: int = 200,
    *,
    check: Callable[[], None] | None = None,
) -> bytes:
    """Poll ``url`` until it answers HTTP ``status``; return the body.

    ``check`` is called before each attempt and may raise to stop waiting early (e.g.
    because the server process exited).  Raises :class:`TimeoutError` on timeout.
    """
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        if check is not None:
            check()
        remaining = deadline - time.monotonic()
        try:
            code, body = _http("GET", url, timeout=max(0.2, min(5.0, remaining)))
        except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
            last = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
        else:
            if code == status:
                return body
            last = f"HTTP {code}: {body[:200]!r}"
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} did not answer HTTP {status} within {timeout:g}s (last: {last})")
        time.sleep(0.05)


# --------------------------------------------------------------------------- processes


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"--- last lines of {path} ---\n{tail or '(empty)'}"


class _Process:
    """One child process with its output in a log file; always stoppable."""

    live: set[_Process] = set()

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self, argv: Sequence[str], **popen_kwargs: Any) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {' '.join(argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C aimed at pytest does not hit it directly
                **popen_kwargs,
            )
        _Process.live.add(self)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check(self) -> None:
        """Raise if the process has exited."""
        if self.popen is not None and self.popen.poll() is not None:
            raise ComponentError(f"{self.name} exited with status {self.popen.returncode}\n{_tail(self.log_path)}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        popen, self.popen = self.popen, None
        _Process.live.discard(self)
        if popen is None:
            return
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(sig)
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)  # its children too
                popen.wait()


@atexit.register
def _stop_leftovers() -> None:
    for process in list(_Process.live):
        process.stop(timeout=5.0)


# --------------------------------------------------------------------------- components

Config = str | Mapping[str, Any] | Callable[[Any], "str | Mapping[str, Any]"] | None


class _Component:
    """Base: a temporary directory, a log file, start/stop and context management."""

    name = "component"

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self._own_dir = directory is None
        if directory is None:
            directory = tempfile.mkdtemp(prefix=f"gridwatch-{self.name}-")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / f"{self.name}.log"
        self._process = _Process(self.name, self.log_path)
        self.startup_seconds: float | None = None  # duration of the last start()

    @property
    def running(self) -> bool:
        return self._process.running

    @property
    def pid(self) -> int | None:
        """The main process's id while it runs (PostgreSQL's postmaster)."""
        popen = self._process.popen
        return None if popen is None else popen.pid

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        self._process.stop()

    def close(self) -> None:
        """Stop and remove the temporary directory (unless it was given by the caller)."""
        try:
            self.stop()
        finally:
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start_failed(self, reason: str) -> NoReturn:
        self._process.stop(sig=signal.SIGKILL, timeout=5.0)
        raise ComponentError(f"{self.name} did not start: {reason}\n{_tail(self.log_path)}")


def _render(config: Config, component: Any, default: str) -> str:
    if callable(config):
        config = config(component)
    if config is None:
        return default
    if isinstance(config, Mapping):
        return json.dumps(config, indent=2) + "\n"  # JSON is YAML
    return str(config)


class _HttpComponent(_Component):
    """A Go server from the Prometheus family, configured by a file, ready at /-/ready."""

    program = ""
    package = ""
    default_config = ""

    def __init__(
        self,
        config: Config = None,
        *,
        directory: str | os.PathLike[str] | None = None,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        self.binary = require(self.program, self.package)
        super().__init__(directory)
        self.port = port or free_port()
        self.config = config
        self.config_path = self.dir / f"{self.name}.yml"
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout

    @property
    def address(self) -> str:
        """host:port, e.g. for scrape targets."""
        return f"{LOCALHOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Self:
        if self.running:
            return self
        began = time.monotonic()
        self.config_path.write_text(_render(self.config, self, self.default_config))
        self._process.start(self.argv(), cwd=self.dir)
        try:
            wait_http(f"{self.url}/-/ready", self.startup_timeout, check=self._process.check)
        except (ComponentError, TimeoutError) as error:
            self._start_failed(str(error).split("\n", 1)[0])
        self.startup_seconds = time.monotonic() - began
        return self


class Alertmanager(_HttpComponent):
    """A real Alertmanager; ``stop()`` then ``start()`` reuses port and storage."""

    name = "alertmanager"
    program = "alertmanager"
    package = "prometheus-alertmanager"
    default_config = "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n"

    def __init__(
        self,
        config: Config = None,
        *,
        cluster: bool = False,
        peers: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        self.storage_path = self.dir / "data"
        self.cluster_port = free_port() if cluster else None
        self.peers = list(peers)

    @property
    def cluster_address(self) -> str | None:
        return f"{LOCALHOST}:{self.cluster_port}" if self.cluster_port else None

    def argv(self) -> list[str]:
        argv = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.storage_path}",
            f"--web.listen-address={self.address}",
            f"--cluster.listen-address={self.cluster_address or ''}",
        ]
        argv += [f"--cluster.peer={peer}" for peer in self.peers]
        return argv + self.extra_args

    def alerts(self, **params: str | bool) -> list[dict[str, Any]]:
        """GET /api/v2/alerts (optional filters such as ``active=False``)."""
        query = urllib.parse.urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()})
        return _json("GET", f"{self.url}/api/v2/alerts" + (f"?{query}" if query else ""))

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """POST /api/v2/alerts (what Prometheus and gridwatch's notifier do)."""
        _json("POST", f"{self.url}/api/v2/alerts", list(alerts))


class Prometheus(_HttpComponent):
    """A real Prometheus server; the default config scrapes itself every second."""

    name = "prometheus"
    program = "prometheus"
    package = "prometheus"

    def __init__(self, config: Config = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.storage_path = self.dir / "data"

    @property
    def default_config(self) -> str:  # type: ignore[override]
        return json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [{"job_name": "prometheus", "static_configs": [{"targets": [self.address]}]}],
            },
            indent=2,
        )

    def argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.storage_path}",
            f"--web.listen-address={self.address}",
            *self.extra_args,
        ]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query via /api/v1/query; returns ``data.result``."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        answer = _json("GET", url, ok=(200, 400, 422, 503))
        if answer.get("status") != "success":
            raise ComponentError(f"query {promql!r} failed: {answer}")
        return answer["data"]["result"]

    def query_until(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        """Repeat ``query`` until ``predicate(result)`` holds (default: non-empty)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if predicate(result):
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{promql!r} still gives {result} after {timeout:g}s")
            time.sleep(0.2)


# --------------------------------------------------------------------------- PostgreSQL


def _traversable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in (path, *path.parents))


def _socket_base_dir() -> Path:
    """Where a database server's temp dir goes: short (unix socket path limit), reachable by
    the system user the server runs as."""
    base = Path(tempfile.gettempdir())
    too_long = len(str(base)) > 60
    unreachable = os.geteuid() == 0 and not _traversable_by_others(base)
    return Path("/tmp") if too_long or unreachable else base


def postgres_missing() -> str | None:
    """Why no PostgreSQL server can be started here (a message naming the Debian package), or
    None. For callers outside pytest (the bench); the tests get it through :func:`missing`."""
    if pg_bindir() is None:
        return "PostgreSQL server programs (initdb, postgres) not found: install the Debian package postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return (
                "running as root, but there is no 'postgres' system user to run PostgreSQL:"
                " install the Debian package postgresql"
            )
    return None


class PostgresServer(_Component):
    """A throw-away PostgreSQL cluster: initdb, trust auth, one database.

    As root the server programs run as the ``postgres`` system user (initdb and postgres
    refuse to run as root); otherwise as the current user.  The server listens on
    127.0.0.1:<free port> and on a unix socket in its temporary directory.  Durability
    is switched off (fsync etc.) since the data is thrown away.
    """

    name = "postgres"

    def __init__(
        self,
        *,
        user: str = "postgres",
        dbname: str = "gridwatch",
        port: int | None = None,
        directory: str | os.PathLike[str] | None = None,
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        absent = postgres_missing()
        if absent is not None:
            missing(absent)
        bindir = pg_bindir()
        assert bindir is not None
        self.bindir = bindir
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        own_dir = directory is None
        if directory is None:
            directory = tempfile.mkdtemp(prefix="gw-pg-", dir=_socket_base_dir())
        super().__init__(directory)
        self._own_dir = own_dir
        if self._owner is not None:  # a given directory's parents must be reachable too
            os.chown(self.dir, self._owner.pw_uid, self._owner.pw_gid)
        self.user = user
        self.dbname = dbname
        self.host = LOCALHOST
        self.port = port or free_port()
        self.data_dir = self.dir / "data"
        self.socket_dir = self.dir
        self.settings = {
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            **(settings or {}),
        }
        self.startup_timeout = startup_timeout
        self._created: set[str] = set()

    # -- connection strings

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def url_for(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    @property
    def dsn(self) -> str:
        """libpq URI, e.g. for ``psycopg.connect``."""
        return self.dsn_for(self.dbname)

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3 driver)."""
        return self.url_for(self.dbname)

    # -- processes

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", TZ="UTC")  # TZ spares initdb a zoneinfo scan
        if self._owner is not None:
            env.update(HOME=str(self.dir), USER="postgres", LOGNAME="postgres")
        return env

    def _as_owner(self) -> dict[str, Any]:
        if self._owner is None:
            return {}
        return {"user": self._owner.pw_uid, "group": self._owner.pw_gid, "extra_groups": []}

    def _run(self, argv: Sequence[str], *, as_owner: bool) -> None:
        kwargs = self._as_owner() if as_owner else {}
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {' '.join(argv)}\n".encode())
            log.flush()
            result = subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=self._env(),
                timeout=120,
                check=False,
                **kwargs,
            )
        if result.returncode != 0:
            self._start_failed(f"{Path(argv[0]).name} exited with status {result.returncode}")

    def _ready(self) -> bool:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def createdb(self, dbname: str) -> str:
        """Create another database (e.g. one per test); returns its DSN."""
        createdb = self.bindir / "createdb"
        program = str(createdb) if createdb.is_file() else require("createdb", "postgresql")
        self._run(
            [program, "-h", self.host, "-p", str(self.port), "-U", self.user, dbname],
            as_owner=False,
        )
        self._created.add(dbname)
        return self.dsn_for(dbname)

    def start(self) -> Self:
        if self.running:
            return self
        began = time.monotonic()
        fresh = not (self.data_dir / "PG_VERSION").exists()  # else a kept cluster: its database is there
        if fresh:
            self._run(
                [
                    str(self.bindir / "initdb"),
                    f"--pgdata={self.data_dir}",
                    f"--username={self.user}",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                as_owner=True,
            )
        argv = [
            str(self.bindir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-h", self.host,
            "-k", str(self.socket_dir),
        ]  # fmt: skip
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        self._process.start(argv, cwd=self.dir, env=self._env(), **self._as_owner())
        deadline = began + self.startup_timeout
        while not self._ready():
            try:
                self._process.check()
            except ComponentError as error:
                self._start_failed(str(error).split("\n", 1)[0])
            if time.monotonic() > deadline:
                self._start_failed(f"not ready within {self.startup_timeout:g}s")
            time.sleep(0.02)
        if fresh and self.dbname not in self._created:
            self.createdb(self.dbname)
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Fast shutdown (SIGINT): roll back open transactions, disconnect clients."""
        self._process.stop(sig=signal.SIGINT, timeout=30.0)


# --------------------------------------------------------------------------- MariaDB


class MariaDBServer(_Component):
    """A throw-away MariaDB (Debian's ``mariadb-server``): one data directory, one user with a
    password, reached over TCP as a platform's database is.

    ``mariadb-install-db`` creates the system tables with a root that logs in over the private
    unix socket without a password; that root then creates ``user`` (a random password) and the
    databases. As root the programs run as the ``mysql`` system user (``mariadbd`` refuses root).
    No option file is read (``--no-defaults``), so the character set is set here to what
    Debian's configuration gives (utf8mb4, ``utf8mb4_general_ci``); durability is relaxed since
    the data is thrown away.
    """

    name = "mariadb"

    def __init__(
        self,
        *,
        user: str = "gridwatch",
        dbname: str = "gridwatch",
        port: int | None = None,
        directory: str | os.PathLike[str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.server = require("mariadbd", "mariadb-server")
        self.installer = require("mariadb-install-db", "mariadb-server")
        try:
            import pymysql
        except ImportError:
            missing("PyMySQL not found: install the test extra (pip install -e '.[test]')")
        self._pymysql = pymysql
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._owner = pwd.getpwnam("mysql")
            except KeyError:
                missing(
                    "running as root, but there is no 'mysql' system user to run MariaDB:"
                    " install the Debian package mariadb-server"
                )
        own_dir = directory is None
        if directory is None:
            directory = tempfile.mkdtemp(prefix="gw-my-", dir=_socket_base_dir())
        super().__init__(directory)
        self._own_dir = own_dir
        if self._owner is not None:
            os.chown(self.dir, self._owner.pw_uid, self._owner.pw_gid)
        self.user = user
        self.password = secrets.token_hex(8)
        self.dbname = dbname
        self.host = LOCALHOST
        self.port = port or free_port()
        self.data_dir = self.dir / "data"
        self.socket = self.dir / "mariadb.sock"
        self.startup_timeout = startup_timeout
        self._created: set[str] = set()

    # -- connection strings

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL (PyMySQL driver, utf8mb4)."""
        return f"mysql+pymysql://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}?charset=utf8mb4"

    @property
    def url(self) -> str:
        return self.url_for(self.dbname)

    def admin(self) -> Any:
        """A PyMySQL connection as the server's root, over the private socket (autocommit)."""
        return self._pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True, charset="utf8mb4")

    def createdb(self, dbname: str) -> str:
        """Create another database (e.g. one per test), empty; returns its SQLAlchemy URL."""
        with contextlib.closing(self.admin()) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{dbname}`")
            cur.execute(f"CREATE DATABASE `{dbname}` CHARACTER SET utf8mb4")
        self._created.add(dbname)
        return self.url_for(dbname)

    # -- processes

    def _options(self) -> list[str]:
        """What both the installer and the server are given."""
        return [
            "--no-defaults",  # must come first
            f"--datadir={self.data_dir}",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=8M",
            "--innodb-flush-log-at-trx-commit=0",
            "--skip-name-resolve",
        ]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL", "MARIADB"))}
        env.update(LC_ALL="C", LANG="C", TZ="UTC", HOME=str(self.dir))
        if self._owner is not None:
            env.update(USER="mysql", LOGNAME="mysql")
        return env

    def _as_owner(self) -> dict[str, Any]:
        if self._owner is None:
            return {}
        return {"user": self._owner.pw_uid, "group": self._owner.pw_gid, "extra_groups": []}

    def _install(self) -> None:
        argv = [self.installer, *self._options(), "--auth-root-authentication-method=normal", "--skip-test-db"]
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {' '.join(argv)}\n".encode())
            log.flush()
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=self._env(),
                timeout=120,
                check=False,
                **self._as_owner(),
            )
        if result.returncode != 0:
            self._start_failed(f"{Path(self.installer).name} exited with status {result.returncode}")

    def _ready(self) -> bool:
        try:
            self.admin().close()
        except self._pymysql.err.OperationalError:
            return False
        return True

    def start(self) -> Self:
        if self.running:
            return self
        began = time.monotonic()
        installed = (self.data_dir / "mysql").is_dir()
        if not installed:
            self._install()
        argv = [
            self.server,
            *self._options(),
            f"--socket={self.socket}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            f"--pid-file={self.dir / 'mariadb.pid'}",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
        ]
        self._process.start(argv, cwd=self.dir, env=self._env(), **self._as_owner())
        deadline = began + self.startup_timeout
        while not self._ready():
            try:
                self._process.check()
            except ComponentError as error:
                self._start_failed(str(error).split("\n", 1)[0])
            if time.monotonic() > deadline:
                self._start_failed(f"not ready within {self.startup_timeout:g}s")
            time.sleep(0.05)
        if not installed:
            with contextlib.closing(self.admin()) as conn, conn.cursor() as cur:
                cur.execute(f"CREATE USER `{self.user}`@`%%` IDENTIFIED BY %s", [self.password])
                cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO `{self.user}`@`%`")
        if self.dbname not in self._created:
            self.createdb(self.dbname)
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Normal shutdown (SIGTERM): open transactions rolled back, clients disconnected."""
        self._process.stop(sig=signal.SIGTERM, timeout=60.0)


# --------------------------------------------------------------------------- fixtures

C = TypeVar("C", bound=_HttpComponent)


class Launcher(Generic[C]):
    """Factory behind the ``alertmanager`` / ``prometheus`` fixtures.

    ``launch(config, **kwargs)`` starts a component in a fresh directory under pytest's
    tmp dir (so its log survives the run) and remembers it; ``close()`` stops them all.
    """

    def __init__(self, cls: type[C], tmp_path_factory: pytest.TempPathFactory) -> None:
        self.cls = cls
        self.tmp_path_factory = tmp_path_factory
        self.started: list[C] = []

    def __call__(self, config: Config = None, **kwargs: Any) -> C:
        kwargs.setdefault("directory", self.tmp_path_factory.mktemp(self.cls.name))
        component = self.cls(config, **kwargs)
        self.started.append(component)
        return component.start()

    def close(self) -> None:
        with contextlib.ExitStack() as stack:
            for component in self.started:
                stack.callback(component.close)
        self.started.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
