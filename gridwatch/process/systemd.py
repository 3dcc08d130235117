"""systemd's notify protocol: READY once the first round of checks ran, a watchdog ping
from the event loop (a hung loop stops pinging and systemd restarts it), STOPPING on exit.

The protocol is one datagram per message to ``$NOTIFY_SOCKET``; no library is needed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger("gridwatch.process.systemd")


def notify(message: str) -> bool:
    """Send one message; False when not run by systemd (no ``$NOTIFY_SOCKET``)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(message.encode())
        return True
    except OSError as exc:
        log.warning("cannot notify systemd: %s", exc)
        return False


def watchdog_interval() -> float | None:
    """Half the watchdog timeout systemd set for this process, or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6 / 2
    except ValueError:
        return None


async def watchdog(interval: float) -> None:
    """Ping for as long as the event loop turns."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
