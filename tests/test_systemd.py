"""systemd: READY after the first round, WATCHDOG at the configured rate, a unit systemd accepts."""

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from gridwatch.testing import DaemonProcess, free_port, wait_for
from tests.test_daemon import make_db, write_config

REPO = Path(__file__).resolve().parent.parent
FIXTURE_PLUGINS = Path(__file__).parent / "fixtures" / "plugins"


def test_ready_after_the_first_round_and_watchdog_pings(tmp_path):
    make_db(tmp_path / "grid.db")
    shutil.copytree(FIXTURE_PLUGINS, tmp_path / "plugins")
    port = free_port()
    # a check whose first run takes 2 s: READY must wait for it
    cfg = write_config(
        tmp_path, port, '[[checks]]\nname = "slow"\ntype = "sleepy"\ninterval = "1h"\ntimeout = "10s"\nseconds = 2\n'
    )
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    messages: list[tuple[float, str]] = []  # (arrival, message), stamped as they arrive
    done = threading.Event()

    def receive() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                messages.append((time.monotonic(), sock.recv(4096).decode()))

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()

    def drain() -> list[str]:
        return [m for _, m in messages]

    # WATCHDOG_USEC=1s: gridwatch pings every half of it; WATCHDOG_PID is set by systemd for
    # the main process, which we cannot know before starting it, so leave it out
    env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"}
    with DaemonProcess(cfg, port, env=env) as d:
        started = time.monotonic()
        wait_for(lambda: any(m.startswith("READY=1") for m in drain()), 15, "READY=1")
        ready_at = next(t for t, m in messages if m.startswith("READY=1"))
        assert d.get("/readyz")[0] == 200
        assert ready_at - started >= 1.0, "READY came before the slow check's first run finished"
        wait_for(lambda: sum(m == "WATCHDOG=1" for m in drain()) >= 6, 10, "watchdog pings")
        pings = [t for t, m in messages if m == "WATCHDOG=1"]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert len(pings) >= 4 and max(gaps) < 0.9, gaps  # every 0.5 s, never near the 1 s limit
        assert d.stop() == 0
    wait_for(lambda: "STOPPING=1" in drain(), 5, "STOPPING=1")
    done.set()
    receiver.join()
    sock.close()


def test_systemd_analyze_accepts_the_unit(tmp_path):
    from tests.components import require

    analyze = require("systemd-analyze", "systemd")
    # the shipped unit names the installed entry point; point it at this environment's
    unit = (REPO / "deploy" / "systemd" / "gridwatch.service").read_text()
    exe = Path(sys.executable).with_name("gridwatch")
    assert exe.exists()
    (tmp_path / "gridwatch.service").write_text(unit.replace("/opt/gridwatch/bin/gridwatch", str(exe)))
    res = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / "gridwatch.service")],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    for key in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "StateDirectory=gridwatch",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "WatchdogSec=",
    ):
        assert key in unit
