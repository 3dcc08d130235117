"""Clients that never read their answer, against a real daemon with few file descriptors.

A ``sql`` check yields 20,000 series, so ``/metrics`` is 1.6 MB: far more than the socket buffers
of a client that sets a 1 KiB receive buffer and never reads, so each such client holds a write
that cannot finish. The daemon runs under ``ulimit -n 128`` (a wrapper script as its interpreter).
Without bounds the clients took every descriptor: ``accept()`` failed and asyncio logged it
thousands of times a second, ``/healthz`` stopped answering and the SQLite source could not open
its file. Now the open connections are capped (503 for one more), an answer that does not move
for ``client_timeout`` is abandoned, and the sources keep their descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import resource
import socket
import sqlite3
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gridwatch.testing import DaemonProcess, free_port, wait_for
from gridwatch.web.server import RESERVE, Every, Gate, Listener, listen

UNIT = Path(__file__).resolve().parent.parent / "deploy" / "systemd" / "gridwatch.service"
CLIENTS = 150
FDS = 128


def big_config(tmp_path: Path, port: int, server: str = "") -> Path:
    with sqlite3.connect(tmp_path / "big.db") as db:
        db.execute("CREATE TABLE t (k TEXT, n REAL)")
        db.executemany("INSERT INTO t VALUES (?, ?)", [(f"key-{i:06d}-" + "x" * 40, i) for i in range(20_000)])
    db.close()
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        [server]
        listen = "127.0.0.1:{port}"
        client_timeout = "3s"
        """)
        + textwrap.dedent(server)
        + textwrap.dedent("""
        [state]
        path = "state.db"
        [sources.big]
        type = "sqlite"
        path = "big.db"
        [[checks]]
        name = "big"
        type = "sql"
        source = "big"
        interval = "1s"
        metric = "gridwatch_test_big"
        value = "n"
        query = "SELECT k, n FROM t"
        """),
        encoding="utf-8",
    )
    return cfg


def few_descriptors(tmp_path: Path, limit: int = FDS) -> Path:
    """An "interpreter" that runs this one with ``ulimit -n LIMIT`` (soft and hard)."""
    wrapper = tmp_path / "python-few-fds"
    wrapper.write_text(f'#!/bin/sh\nulimit -n {limit}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@contextmanager
def non_readers(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` clients that ask for /metrics and never read a byte of the answer."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            s.settimeout(5)
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


def statuses(socks: list[socket.socket]) -> dict[bytes, int]:
    """The status each client got (peeked at, still unread), once every client has one."""

    def peek() -> dict[bytes, int] | None:
        got: dict[bytes, int] = {}
        for s in socks:
            try:
                head = s.recv(12, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                return None
            got[head[9:12]] = got.get(head[9:12], 0) + 1
        return got

    return wait_for(peek, 2, "an answer's first line on every connection")


def settled(port: int) -> None:
    """A request answered and closed by the server: the connections before it are gone too."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        while s.recv(65536):
            pass


def open_fds(d: DaemonProcess) -> int:
    assert d.proc is not None
    return len(os.listdir(f"/proc/{d.proc.pid}/fd"))


def check_runs(d: DaemonProcess, outcome: str) -> float:
    return d.metric("gridwatch_check_runs_total", check="big", outcome=outcome) or 0


def assert_served_again(d: DaemonProcess, began: float) -> None:
    """Within client_timeout (3 s) and a sweep of the abandoned answers, new clients are served."""
    wait_for(lambda: d.get("/healthz")[0] == 200, 6, f"/healthz\n{d.log()[-2000:]}")
    assert time.monotonic() - began < 3 + 3
    assert d.metric("gridwatch_source_up", source="big") == 1
    failed = check_runs(d, "failure") + check_runs(d, "timeout")
    ok = check_runs(d, "success")
    wait_for(lambda: check_runs(d, "success") >= ok + 2, 10, "two more runs of the check")
    assert check_runs(d, "failure") + check_runs(d, "timeout") == failed == 0
    log = d.log()
    server = [line for line in log.splitlines() if " gridwatch.web.server: " in line]
    assert "Traceback" not in log and " asyncio: " not in log and "accept" not in log, log[-3000:]
    assert len(server) <= 3, server  # the limit lowered, connections refused, answers cut off: once each


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_max_connections_caps_what_clients_that_never_read_can_hold(tmp_path):
    port = free_port()
    cfg = big_config(tmp_path, port, "max_connections = 20\n")
    with DaemonProcess(cfg, port, python=few_descriptors(tmp_path)) as d:
        wait_for(lambda: d.get("/readyz")[0] == 200, 30, "readiness")
        settled(port)
        base = open_fds(d)
        began = time.monotonic()
        with non_readers(port, CLIENTS) as socks:
            assert statuses(socks) == {b"200": 20, b"503": CLIENTS - 20}
            assert open_fds(d) <= base + 20 + 3  # (+ a check run's SQLite file, its WAL and journal)
            assert d.get("/healthz")[0] == 503  # full, and says so at once
            assert_served_again(d, began)
        assert "refused" in d.log() and "stopped reading its answer" in d.log()
        assert d.stop() == 0


def test_too_many_connections_for_the_descriptors_allowed_are_not_accepted(tmp_path):
    port = free_port()
    cfg = big_config(tmp_path, port)  # max_connections 512 by default: more than 128 descriptors hold
    with DaemonProcess(cfg, port, python=few_descriptors(tmp_path)) as d:
        wait_for(lambda: d.get("/readyz")[0] == 200, 30, "readiness")
        fit = FDS - RESERVE  # 64 connections, 64 descriptors left for the rest
        settled(port)
        began = time.monotonic()
        with non_readers(port, CLIENTS) as socks:
            assert statuses(socks) == {b"200": fit, b"503": CLIENTS - fit}
            assert_served_again(d, began)
        assert f"serving at most {fit} connections" in d.log()
        assert d.stop() == 0


def test_running_out_of_descriptors_is_logged_once_a_minute_and_accepting_resumes(caplog):
    """A real listening socket and a real EMFILE: this process's own descriptors used up."""

    async def main() -> tuple[int, int]:
        served: list[asyncio.BaseTransport] = []

        class Answer(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                served.append(transport)
                transport.close()

        gate = Gate(Answer, limit=1000, write_timeout=5.0, clock=lambda: 1000.0)
        [sock] = listen("127.0.0.1", 0)
        listener = Listener(sock, gate, retry=0.01)
        clients = [socket.create_connection(sock.getsockname(), timeout=5) for _ in range(20)]  # in the backlog
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        fillers: list[int] = []
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(map(int, os.listdir("/proc/self/fd"))) + 8, hard))
            with contextlib.suppress(OSError):
                while len(fillers) < 1000:
                    fillers.append(os.open(os.devnull, os.O_RDONLY))
            for _ in range(500):  # until accept() has failed 30 times, 10 ms apart
                if listener.exhausted >= 30:
                    break
                await asyncio.sleep(0.01)
        finally:
            for fd in fillers:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        exhausted = listener.exhausted
        for _ in range(500):  # the twenty waiting in the backlog are served once descriptors are back
            if len(served) == 20:
                break
            await asyncio.sleep(0.01)
        listener.close()
        for c in clients:
            c.close()
        return exhausted, len(served)

    with caplog.at_level(logging.INFO, logger="gridwatch.web.server"):
        exhausted, served = asyncio.run(main())
    assert exhausted >= 30 and served == 20
    assert [r.getMessage() for r in caplog.records] == [
        "cannot accept connections: Too many open files (1 time(s) since the last report); "
        "lower [server] max_connections or raise LimitNOFILE"
    ]


def test_reports_are_at_most_one_a_minute_and_count_what_they_left_out():
    now = [0.0]
    every = Every(60.0, clock=lambda: now[0])
    assert [every.due() for _ in range(3)] == [1, None, None]
    now[0] = 59.9
    assert every.due(5) is None
    now[0] = 60.0
    assert every.due() == 2 + 5 + 1


def test_the_unit_allows_the_default_connections_and_the_reserve():
    found = re.findall(r"^LimitNOFILE=(\d+)$", UNIT.read_text(), re.MULTILINE)
    assert len(found) == 1 and int(found[0]) >= 512 + RESERVE
