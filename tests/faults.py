"""Fault injection for ``tests/test_faults_*.py``: a server that misbehaves on cue, goes down and
comes back on the same port; kills; and read-only looks into a state database.

Every fault is injected into a real ``gridwatch run`` process (:class:`DaemonProcess`) while it
runs: real files, real sockets, real signals.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from gridwatch.testing import DaemonProcess, free_port

MODES = ("ok", "500", "html", "truncated", "cut", "hang")


class FlakyServer:
    """An HTTP server on a fixed 127.0.0.1 port, in a thread of its own.

    ``GET /api/{table}`` answers ``{"data": rows}`` from :attr:`tables` (a platform's JSON API
    for the ``http`` source); any ``POST`` is recorded (a webhook receiver) and answered 200.
    :attr:`mode` makes it misbehave: ``500`` (an error page), ``html`` (a maintenance page with
    status 200), ``truncated`` (half the JSON, consistently framed), ``cut`` (the connection
    drops half-way through the announced body), ``hang`` (never answers). ``stop()`` refuses
    connections until ``start()`` again, on the same port.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mode = "ok"
        self.tables: dict[str, list[dict[str, Any]]] = {}
        self.posts: list[tuple[str, Any, float]] = []
        self.gets = 0
        self.hanging = 0  # requests being held right now
        self.post_delay = 0.0  # seconds a POST takes to be answered (a slow receiver)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="flaky-server", daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FlakyServer:
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_get("/api/{table}", self._get)
        app.router.add_post("/{tail:.*}", self._post)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        await web.SockSite(self._runner, sock).start()

    def stop(self) -> None:
        """Close the port: new connections are refused, held requests are dropped."""
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(15)

    async def _stop(self) -> None:
        if self._release is not None:
            self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def set_mode(self, mode: str) -> None:
        assert mode in MODES, mode

        async def switch() -> None:
            if mode == "hang":
                self._release = asyncio.Event()
            elif self._release is not None:
                self._release.set()  # held requests go (and fail)
            self.mode = mode

        asyncio.run_coroutine_threadsafe(switch(), self._loop).result(5)

    # -- handlers ----------------------------------------------------------------------------
    async def _get(self, request: web.Request) -> web.StreamResponse:
        self.gets += 1
        mode = self.mode
        if mode == "hang":
            release = self._release
            assert release is not None
            self.hanging += 1
            try:
                await release.wait()
            finally:
                self.hanging -= 1
            raise web.HTTPServiceUnavailable(text="released")
        if mode == "500":
            return web.Response(status=500, text="upstream exploded")
        if mode == "html":
            return web.Response(text="<html><body>系统维护中</body></html>", content_type="text/html")
        body = json.dumps({"data": self.tables.get(request.match_info["table"], [])}, ensure_ascii=False).encode()
        if mode == "truncated":
            return web.Response(body=body[: len(body) // 2], content_type="application/json")
        if mode == "cut":
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.content_length = len(body)
            await resp.prepare(request)
            await resp.write(body[: len(body) // 2])
            assert request.transport is not None
            request.transport.close()
            return resp
        return web.Response(body=body, content_type="application/json")

    async def _post(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        with self._lock:
            self.posts.append((request.path, body, time.time()))
        if self.post_delay:  # received, but the sender waits for the answer (and may die meanwhile)
            await asyncio.sleep(self.post_delay)
        return web.json_response({"status": "ok"})

    # -- what arrived ------------------------------------------------------------------------
    def alerts(self, path: str = "/hook") -> list[dict[str, Any]]:
        """Every alert delivered to ``path`` (webhook payloads), in arrival order."""
        with self._lock:
            bodies = [b for p, b, _ in self.posts if p == path]
        return [a for b in bodies for a in b["alerts"]]


@contextmanager
def flaky_server(port: int | None = None) -> Iterator[FlakyServer]:
    server = FlakyServer(port).start()
    try:
        yield server
    finally:
        server.close()


def kill(d: DaemonProcess) -> None:
    """SIGKILL: no shutdown code runs, nothing is flushed."""
    assert d.proc is not None
    d.proc.kill()
    d.proc.wait(10)
    if not d._log.closed:
        d._log.close()


def runs(d: DaemonProcess, check: str, outcome: str = "success") -> float:
    return d.metric("gridwatch_check_runs_total", check=check, outcome=outcome) or 0


def status_of(d: DaemonProcess, kind: str, name: str) -> dict[str, Any]:
    """One check's (kind ``checks``) or source's (``sources``) entry of /api/v1/status."""
    [entry] = [e for e in d.json("/api/v1/status")[kind] if e["name"] == name]
    return entry


def read_state(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A read-only look into a state database (another process may hold it)."""
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10) as db:
        rows = db.execute(sql, params).fetchall()
    db.close()
    return rows


def integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of a state database: "ok" when it opens cleanly and is whole."""
    return "; ".join(r[0] for r in read_state(path, "PRAGMA integrity_check"))


# -- real storage faults -----------------------------------------------------------------------


def alert_config(tmp_path: Path, port: int, hook_url: str, state: str = "state.db", **kw: Any) -> Path:
    """tests/test_alertmanager.py's daemon (a ``sql`` check every second on ``data.db``, one rule
    ``TestValueHigh`` above 5 warning / 8 critical, a webhook) with its state database at ``state``."""
    from tests.test_alertmanager import write_config

    cfg = write_config(tmp_path, port, hook_url, **kw)
    text = cfg.read_text(encoding="utf-8")
    assert 'path = "state.db"' in text
    cfg.write_text(text.replace('path = "state.db"', f'path = "{state}"', 1), encoding="utf-8")
    return cfg


def hook_alerts(server: FlakyServer, grid: str) -> list[tuple[str, str, str]]:
    """(status, severity, startsAt) of what the webhook got about ``grid``, in order."""
    return [
        (a["status"], a["labels"]["severity"], a["startsAt"])
        for a in server.alerts("/hook")
        if a["labels"].get("grid") == grid
    ]


@contextmanager
def small_filesystem(directory: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``directory`` (needs root with CAP_SYS_ADMIN): a disk that
    really fills up. Fails under CI, skips elsewhere, when it cannot be mounted."""
    import os
    import subprocess

    from tests.components import missing

    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        missing("a full disk is simulated with a small tmpfs, which needs root: run the tests as root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True)
    if res.returncode != 0:
        missing(f"cannot mount a tmpfs to simulate a full disk: {res.stderr.decode(errors='replace').strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def fill(directory: Path) -> Path:
    """Fill the file system under ``directory`` to the last byte; returns the filler to delete."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == 28, exc  # ENOSPC
        for size in (4096, 512, 1):  # and the odd bytes left
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return filler


def truncate_wal(state_db: Path) -> None:
    """Checkpoint the daemon's state database and truncate its WAL (what SQLite does itself now
    and then), so its next write needs new disk space rather than reusing the WAL's."""
    for _ in range(100):
        with sqlite3.connect(state_db, timeout=10) as db:
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        db.close()
        if not busy:
            return
        time.sleep(0.05)
    raise AssertionError("could not checkpoint the state database")


@contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """``chattr +i`` on files a running process holds open: its writes fail (EPERM) as on a file
    system gone read-only, while reads go on. Needs root and a file system that supports it (and
    enforces it on open files); fails under CI, skips elsewhere, otherwise. Never use it on a
    SQLite ``-shm`` file: that one is memory-mapped, and a write to it would kill the process."""
    import os
    import shutil
    import subprocess

    from tests.components import missing

    chattr = shutil.which("chattr")
    if chattr is None or os.geteuid() != 0:
        missing("a read-only state database is simulated with chattr +i: run as root with e2fsprogs installed")
    assert chattr is not None
    probe = paths[0].parent / "probe-immutable"
    with open(probe, "wb", buffering=0) as f:
        res = subprocess.run([chattr, "+i", str(probe)], capture_output=True)
        enforced = False
        if res.returncode == 0:
            try:
                f.write(b"x")
            except OSError:
                enforced = True
            subprocess.run([chattr, "-i", str(probe)], capture_output=True)
    probe.unlink()
    if not enforced:
        missing(f"the file system under {paths[0].parent} does not enforce chattr +i on open files")
    subprocess.run([chattr, "+i", *map(str, paths)], check=True)
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", *map(str, paths)], check=True)
