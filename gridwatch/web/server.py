"""The listening socket, bounded: how many connections are open, how long an answer nobody reads
may hold one, and how loudly running out of file descriptors is logged.

Every connection costs a file descriptor, and so does every SQLite query, PostgreSQL connection
and the state database. Clients that ask for ``/metrics`` and never read the answer used to hold
their connection forever (the write waits for room that never comes) until ``accept()`` failed,
the sources could not open their files and asyncio logged the failure thousands of times a
second. Like Prometheus's ``--web.max-connections``, the :class:`Gate` caps the open
connections (its :class:`Listener` answers one more 503 and closes it at once) and aborts a
connection whose answer has not moved for ``write_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import socket
import ssl
import time
import weakref
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("gridwatch.web.server")

RESERVE = 64  # file descriptors kept for sources, the state database, notifiers and logs

_BODY = b'{"error": "too many open connections", "status": 503}'
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
    b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s" % (len(_BODY), _BODY)
)


class Every:
    """At most one report per ``seconds``; what happened meanwhile is counted for the next one."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock = seconds, clock
        self._last = -float("inf")
        self.missed = 0

    def due(self, events: int = 1) -> int | None:
        """The number of events since the last report (these included) when one is due, else None."""
        self.missed += events
        now = self.clock()
        if now - self._last < self.seconds:
            return None
        self._last, n, self.missed = now, self.missed, 0
        return n


class _Connection(asyncio.Protocol):
    """aiohttp's handler of one connection, counted by its :class:`Gate` while it is open (and its
    transport at hand, to see whether its answer still moves)."""

    def __init__(self, inner: asyncio.Protocol, gate: Gate) -> None:
        self.inner, self.gate = inner, gate
        self.transport: asyncio.WriteTransport | None = None
        self.stuck: tuple[float, int] | None = None  # since when the unsent answer has not shrunk, and its size
        gate.live.add(self)  # (weakly: a TLS handshake that fails is neither made nor lost, only dropped)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.live.discard(self)
        self.inner.connection_lost(exc)


class Gate:
    """The open connections of the listening sockets: counted from the moment one is accepted, at
    most ``limit`` of them, and those whose answer stopped moving cut off."""

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        limit: int,
        write_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.factory = factory
        self.limit = limit  # (a reload may change it)
        self.write_timeout = write_timeout
        self.clock = clock
        self.live: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self.accepting = 0  # accepted, their handler not made yet
        self._full = Every(60.0, clock)
        self._cut = Every(60.0, clock)

    def full(self) -> bool:
        return len(self.live) + self.accepting >= self.limit

    def refused(self) -> None:
        n = self._full.due()
        if n is not None:
            log.warning(
                "%d connections open, the most [server] max_connections allows: refused %d new one(s) "
                "since the last report",
                len(self.live) + self.accepting,
                n,
            )

    def connection(self) -> asyncio.Protocol:
        """aiohttp's handler for one more connection, counted while it is open."""
        return _Connection(self.factory(), self)

    def sweep(self) -> int:
        """Abort the connections whose answer has not moved for ``write_timeout`` seconds (a client
        that stopped reading); the number aborted."""
        now, aborted = self.clock(), 0
        for conn in list(self.live):
            t = conn.transport
            size = t.get_write_buffer_size() if t is not None else 0
            if size == 0:
                conn.stuck = None
            elif conn.stuck is None or size != conn.stuck[1]:
                conn.stuck = (now, size)  # it moved (more was written once some was sent): the client reads
            elif now - conn.stuck[0] >= self.write_timeout:
                assert t is not None
                t.abort()
                aborted += 1
        if aborted:
            n = self._cut.due(aborted)
            if n is not None:
                log.info(
                    "closed %d connection(s) whose client stopped reading its answer for %gs", n, self.write_timeout
                )
        return aborted

    async def sweeping(self) -> None:
        """:meth:`sweep` a few times per ``write_timeout``, for as long as the server runs."""
        every = min(1.0, self.write_timeout / 4)
        while True:
            await asyncio.sleep(every)
            try:
                self.sweep()
            except Exception:
                log.exception("could not look at the open connections")


OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Listener:
    """A listening socket whose connections are accepted here rather than by asyncio: only while the
    gate has room (one more is answered 503 and closed before the next is accepted, so a burst
    costs one descriptor, not a backlog's worth), and, out of descriptors, retried after
    ``retry`` seconds with one log line a minute instead of asyncio's traceback per attempt."""

    def __init__(
        self,
        sock: socket.socket,
        gate: Gate,
        tls: ssl.SSLContext | None = None,
        retry: float = 1.0,
    ) -> None:
        self.sock, self.gate, self.tls, self.retry = sock, gate, tls, retry
        self.sockets = [sock]
        self.exhausted = 0  # accept() failures for want of descriptors, since start
        self._loop = asyncio.get_running_loop()
        self._errors = Every(60.0, gate.clock)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(64):  # a burst at a time, then the loop serves the others
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # the socket stays readable: pause, or this would spin
                if exc.errno in OUT_OF_RESOURCES:
                    self.exhausted += 1
                n = self._errors.due()
                if n is not None:
                    advice = "; lower [server] max_connections or raise LimitNOFILE"
                    log.error(
                        "cannot accept connections: %s (%d time(s) since the last report)%s",
                        exc.strerror or exc,
                        n,
                        advice if exc.errno in OUT_OF_RESOURCES else "",
                    )
                self._loop.remove_reader(self.sock.fileno())
                self._loop.call_later(self.retry, self._resume)
                return
            if self.gate.full():
                self._refuse(conn)
                continue
            self.gate.accepting += 1
            task = self._loop.create_task(self._connect(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self.sock.fileno(), self._accept)

    def _refuse(self, conn: socket.socket) -> None:
        self.gate.refused()
        try:
            conn.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                conn.recv(65536)  # what the client sent already: unread, the close would be a reset
            if self.tls is None:
                conn.send(REFUSAL)  # a fresh socket's buffer takes it whole
        except OSError:
            pass
        finally:
            conn.close()

    async def _connect(self, conn: socket.socket) -> None:
        """Hand an accepted socket to aiohttp (after the TLS handshake, bounded like a request head)."""
        made = False

        def handler() -> asyncio.Protocol:
            nonlocal made
            made = True
            self.gate.accepting -= 1  # counted among the live ones from now on
            return self.gate.connection()

        tls: dict[str, Any] = {}
        if self.tls is not None:
            tls = {"ssl": self.tls, "ssl_handshake_timeout": self.gate.write_timeout}
        try:
            await self._loop.connect_accepted_socket(handler, conn, **tls)
        except (OSError, ssl.SSLError, TimeoutError) as exc:  # a failed TLS handshake, a client gone
            log.debug("a connection ended before its first request: %r", exc)
            conn.close()
        finally:
            if not made:
                self.gate.accepting -= 1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()

    async def wait_closed(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks))


def listen(host: str, port: int, backlog: int = 128) -> list[socket.socket]:
    """Bound, listening sockets for ``host`` (a name may give an IPv4 and an IPv6 one), as asyncio's
    ``create_server`` makes them."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


class GatedSite(web.TCPSite):
    """aiohttp's TCP site with its connections accepted by :class:`Listener`s through one :class:`Gate`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, gate: Gate, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.gate = gate
        self.listeners: list[Listener] = []

    async def start(self) -> None:
        await web.BaseSite.start(self)  # (TCPSite.start would have asyncio accept the connections)
        assert self._host is not None  # the daemon always names the address it listens on
        self.listeners = [Listener(s, self.gate, self._ssl_context) for s in listen(self._host, self._port)]

    async def stop(self) -> None:
        for listener in self.listeners:
            listener.close()
        await super().stop()


def descriptors(wanted: int) -> int:
    """Raise the soft limit on open files to the hard one (as Go programs do at start), and return
    how many connections fit under it with :data:`RESERVE` left for everything else."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or wanted <= soft - RESERVE:
        return wanted
    fit = max(1, soft - RESERVE)
    log.warning(
        "[server] max_connections = %d leaves too few of the %d open files allowed (LimitNOFILE): "
        "serving at most %d connections",
        wanted,
        soft,
        fit,
    )
    return fit
