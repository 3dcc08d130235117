"""What the HTTP side answers besides the data: which ``Host`` it answers to, what a cache may keep,
a scraper that hangs up early, ``/metrics`` in gzip, and the ``process_*`` metrics.

Real daemons on loopback; the gzip stream and the CRC arithmetic also on hand-picked bytes.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import pytest
from prometheus_client import ProcessCollector

from gridwatch.testing import DaemonProcess, free_port, wait_for
from gridwatch.tokens import digest
from gridwatch.web.compress import accepts_gzip, crc32_combine, crc32_shift, deflate, gzip_chunks
from gridwatch.web.selfmetrics import ProcessMetrics
from tests.test_connections import big_config
from tests.test_security import write_config

READ_TOKEN = "re4d-T0ken-for-the-wall"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with _OPENER.open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def ready(d: DaemonProcess) -> None:
    wait_for(lambda: fetch(d.port, "/readyz")[0] == 200, 20, f"readiness\n{d.log()[-2000:]}")


# -- Host --------------------------------------------------------------------------------------


def test_while_reads_are_open_only_ip_addresses_localhost_and_the_listen_name_are_answered(tmp_path):
    port = free_port()
    with DaemonProcess(write_config(tmp_path, port), port) as d:
        ready(d)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST.", f"[::1]:{port}", "192.168.1.20:9477"):
            assert fetch(port, "/api/v1/status", {"Host": host})[0] == 200, host
        for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.attacker.example", "localhost.evil"):
            for path in ("/api/v1/status", "/api/v1/grids", "/metrics", "/"):
                status, _, body = fetch(port, path, {"Host": host})
                assert (status, json.loads(body)["status"]) == (421, 421), (host, path)
        # probes say only "alive" or "ready": answered whatever they call gridwatch
        assert fetch(port, "/healthz", {"Host": "attacker.example"})[0] == 200
        assert fetch(port, "/readyz", {"Host": "attacker.example"})[0] == 200
        assert d.stop() == 0


def test_configured_hostnames_are_checked_even_with_credentials(tmp_path):
    port = free_port()
    server = f'read_token_sha256 = "{digest(READ_TOKEN)}"\nhostnames = ["gridwatch.example.org"]\n'
    with DaemonProcess(write_config(tmp_path, port, server), port) as d:
        ready(d)
        auth = {"Authorization": f"Bearer {READ_TOKEN}"}
        for host, status in (
            ("gridwatch.example.org", 200),
            ("GridWatch.Example.Org.:443", 200),
            ("localhost", 200),
            ("10.0.0.7", 200),
            ("attacker.example", 421),
            ("example.org", 421),
        ):
            assert fetch(port, "/api/v1/status", {**auth, "Host": host})[0] == status, host
        assert d.stop() == 0


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('hostnames = ["https://gridwatch.example.org/"]', "server.hostnames: 'https://gridwatch.example.org/' is not"),
        ('hostnames = ["gridwatch.example.org:9477"]', "server.hostnames: 'gridwatch.example.org:9477' is not a"),
        ("max_connections = 0", "server.max_connections: Input should be greater than or equal to 1"),
    ],
)
def test_a_bad_hostname_or_connection_limit_is_a_config_error(tmp_path, line, error):
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(f"[server]\n{line}\n", encoding="utf-8")
    res = subprocess.run(
        [sys.executable, "-m", "gridwatch", "check-config", "-c", str(cfg)], capture_output=True, text=True
    )
    assert res.returncode == 2 and res.stderr.startswith(f"{cfg}: {error}"), res.stderr
    assert len(res.stderr.splitlines()) == 1 and "Traceback" not in res.stderr


# -- caches --------------------------------------------------------------------------------------


def test_answers_to_requests_with_credentials_are_not_stored(tmp_path):
    port = free_port()
    with DaemonProcess(write_config(tmp_path, port, f'read_token_sha256 = "{digest(READ_TOKEN)}"\n'), port) as d:
        ready(d)
        auth = {"Authorization": f"Bearer {READ_TOKEN}"}
        for path in ("/api/v1/status", "/api/v1/grids", "/metrics", "/", "/board/board.js"):
            status, headers, _ = fetch(port, path, auth)
            assert status == 200 and headers.get("Cache-Control") == "no-store", (path, headers)
        status, headers, _ = fetch(port, "/api/v1/status", {"Authorization": "Bearer wrong"})
        assert status == 401 and headers.get("Cache-Control") == "no-store"
        assert "no-store" not in fetch(port, "/healthz")[1].get("Cache-Control", "")
        assert d.stop() == 0


# -- a scraper that hangs up ------------------------------------------------------------------------


def test_a_scraper_that_hangs_up_early_leaves_no_error_in_the_log(tmp_path):
    port = free_port()
    cfg = big_config(tmp_path, port)  # 1.6 MB of /metrics: a hang-up lands while it is written
    with DaemonProcess(cfg, port) as d:
        ready(d)
        for i in range(30):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            if i % 2:
                s.recv(100)  # half of them after the first bytes of the answer
            s.close()
        assert fetch(port, "/metrics")[0] == 200  # served after the last one
        log = d.log()
        assert " ERROR " not in log and "Traceback" not in log, log[-3000:]
        assert d.stop() == 0


# -- gzip ---------------------------------------------------------------------------------------


HEAD = b"# HELP gridwatch_build_info gridwatch build information\n"
MIDDLE = 'gridwatch_grid_info{grid="G1",name="东湖一网格"} 1\n'.encode() * 5000
TAIL = b"# EOF\n"


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 255, 256, 65_536, 1_000_003])
def test_crc32_of_two_parts_combines_as_zlib_computes_the_whole(size):
    a, b = b"gridwatch", bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), crc32_shift(len(b))) == zlib.crc32(a + b)


@pytest.mark.parametrize(("head", "tail"), [(HEAD, TAIL), (HEAD, b""), (b"", TAIL), (b"", b"")])
def test_three_parts_make_one_gzip_member_of_the_whole(head, tail):
    body = b"".join(gzip_chunks(head, deflate(MIDDLE), tail))
    assert body[:2] == b"\x1f\x8b" and gzip.decompress(body) == head + MIDDLE + tail
    # one member (what a browser or curl decodes): zlib stops at its end and finds nothing after it
    d = zlib.decompressobj(31)
    assert d.decompress(body) == head + MIDDLE + tail and d.eof and d.unused_data == b""
    assert struct.unpack("<II", body[-8:]) == (zlib.crc32(head + MIDDLE + tail), len(head + MIDDLE + tail))


@pytest.mark.parametrize(
    ("header", "gzip_it"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),  # curl --compressed, browsers
        ("GZIP;q=0.5", True),
        ("x-gzip", True),
        ("*", True),
        ("", False),
        ("identity", False),
        ("deflate, br", False),
        ("gzip;q=0", False),
        ("gzip;q=0, *", False),  # gzip refused by name: the wildcard does not bring it back
        ("*;q=0", False),
        ("gzip;q=nonsense", False),
    ],
)
def test_accept_encoding(header, gzip_it):
    assert accepts_gzip(header) is gzip_it


# -- process metrics where /proc/stat is hidden ----------------------------------------------------


def test_process_metrics_keep_their_start_time_where_proc_stat_is_hidden(tmp_path):
    """systemd's ``ProcSubset=pid`` shows a process only ``/proc/PID``: ``/proc/stat`` (the boot time)
    is missing. A directory with ``self`` and nothing else is the same view."""
    (tmp_path / "self").symlink_to(f"/proc/{os.getpid()}")
    values = lambda collector: {m.samples[0].name: m.samples[0].value for m in collector.collect()}  # noqa: E731
    hidden = values(ProcessMetrics(proc=str(tmp_path), registry=None))
    full = values(ProcessCollector(registry=None))
    assert (
        set(hidden)
        == set(full)
        == {
            "process_virtual_memory_bytes",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
        }
    )
    assert ProcessCollector(proc=str(tmp_path), registry=None).collect() == []  # prometheus_client's: nothing
    assert hidden["process_start_time_seconds"] == pytest.approx(full["process_start_time_seconds"], abs=1.0)
    assert full["process_start_time_seconds"] <= time.time()


def test_the_daemon_serves_process_metrics(tmp_path):
    port = free_port()
    with DaemonProcess(write_config(tmp_path, port), port) as d:
        ready(d)
        m = d.metrics()
        assert d.proc is not None
        assert m[("process_max_fds", ())] == float(_limit(d.proc.pid))
        assert 0 < m[("process_open_fds", ())] < m[("process_max_fds", ())]
        assert m[("process_resident_memory_bytes", ())] > 10 * 2**20
        assert abs(m[("process_start_time_seconds", ())] - time.time()) < 120
        assert d.stop() == 0


def _limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-files limit")
