"""The HTTP surface under attack, against a real daemon on real sockets.

- reads (``/metrics``, ``/api/v1`` reads, the board) need a read token or basic auth once
  ``[server]`` asks for them; /healthz and /readyz never do; writes still need the write token;
- HTTPS straight from gridwatch with ``tls_cert``/``tls_key`` (a certificate made here with the
  ``openssl`` program), a renewed certificate taken on SIGHUP, and Prometheus scraping it with
  bearer and basic credentials;
- oversized request heads are refused and the daemon keeps serving; a slowloris client (a head or
  a body trickled a byte at a time) is cut off within ``client_timeout`` while others are served;
- no secret of the config (database password, robot key, tokens, basic-auth password) shows in
  ``check-config``, the logs, or any answer.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gridwatch.testing import DaemonProcess, free_port, wait_for, write_standard_db
from gridwatch.tokens import basic_matches, bearer_matches_any, digest, password_digest
from tests.components import require

WRITE_TOKEN = "wr1te-T0ken-for-silences"
READ_TOKEN = "re4d-T0ken-for-prometheus"
INGEST_TOKEN = "inGest-T0ken-for-the-sms-gateway"
USER, PASSWORD = "wallscreen", "B4sic-Passw0rd-of-the-board"
READ_PATHS = [
    "/metrics",
    "/api/v1/status",
    "/api/v1/grids",
    "/api/v1/grids/G1",
    "/api/v1/alerts",
    "/api/v1/silences",
    "/api/v1/summary",
    "/api/v1/assessment?period=2026-10&format=csv",
    "/api/v1/openapi.json",
    "/",
    "/board/board.js",
]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # local servers only


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def request(
    base: str,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: Any = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request; (status, headers, body) whatever the status."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    opener = _OPENER if context is None else urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def write_city(directory: Path) -> Path:
    """Three grids, two with too few visits: alerts fire at once (the visit rules have no ``for``)."""
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    grids = [
        {"grid_id": f"G{i}", "name": f"第{i}网格", "community": "和平社区", "street": "东街街道"} for i in (1, 2, 3)
    ]
    households = [{"household_id": f"H{g}{n}", "grid_id": f"G{g}"} for g in (1, 2, 3) for n in range(4)]
    visits = [{"visit_id": f"V{g}", "household_id": f"H{g}0", "grid_id": f"G{g}", "visited_at": now} for g in (1, 2)]
    visits += [{"visit_id": f"V3{n}", "household_id": f"H3{n}", "grid_id": "G3", "visited_at": now} for n in range(4)]
    return write_standard_db(directory / "city.db", {"grids": grids, "households": households, "visits": visits})


def write_config(directory: Path, port: int, server: str = "", extra: str = "") -> Path:
    """A daemon on the small city with an ingest source; ``server`` adds ``[server]`` keys."""
    write_city(directory)
    path = directory / "gridwatch.toml"
    path.write_text(
        f'timezone = "Asia/Shanghai"\n[server]\nlisten = "127.0.0.1:{port}"\n'
        + textwrap.dedent(server)
        + textwrap.dedent(f"""
        [state]
        path = "state.db"
        [grids]
        source = "city"
        [sources.city]
        type = "sqlite"
        path = "city.db"
        [sources.inbox]
        type = "ingest"
        token_sha256 = "{digest(INGEST_TOKEN)}"
        [[checks]]
        name = "visits"
        type = "visits"
        source = "city"
        interval = "1s"
        """)
        + textwrap.dedent(extra),
        encoding="utf-8",
    )
    return path


PROTECTED = f"""
token_sha256 = "{digest(WRITE_TOKEN)}"
read_token_sha256 = "{digest(READ_TOKEN)}"
basic_auth_users = {{ {USER} = "{password_digest(PASSWORD)}" }}
client_timeout = "2s"
"""


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("protected")
    port = free_port()
    with DaemonProcess(write_config(directory, port, PROTECTED), port) as d:
        wait_for(lambda: request(d.base, "GET", "/readyz")[0] == 200, 20, "readiness")
        yield d


# -- who may read ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", READ_PATHS)
def test_reads_need_a_read_token_basic_auth_or_the_write_token(protected, path):
    base = protected.base
    status, _headers, body = request(base, "GET", path)
    assert status == 401, body
    assert json.loads(body) == {"error": "credentials are required to read", "status": 401}
    challenges = [v for k, v in _all_headers(base, path) if k.lower() == "www-authenticate"]
    assert challenges == ['Basic realm="gridwatch", charset="UTF-8"', 'Bearer realm="gridwatch"']

    for wrong in (
        bearer("not-the-token"),
        bearer(INGEST_TOKEN),
        basic(USER, "wrong"),
        basic("nobody", PASSWORD),
        basic(USER, PASSWORD + " "),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": READ_TOKEN},
        {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1", "X-Forwarded-Proto": "https"},
    ):
        assert request(base, "GET", path, wrong)[0] == 401, wrong

    for right in (bearer(READ_TOKEN), basic(USER, PASSWORD), bearer(WRITE_TOKEN)):
        assert request(base, "GET", path, right)[0] == 200, right


def _all_headers(base: str, path: str) -> list[tuple[str, str]]:
    """Every header line of an unauthenticated answer (urllib folds repeated ones)."""
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in head)]


def test_health_probes_stay_open_and_unknown_paths_tell_nothing(protected):
    assert request(protected.base, "GET", "/healthz")[0] == 200
    assert request(protected.base, "GET", "/readyz")[0] == 200
    assert request(protected.base, "GET", "/no/such/thing")[0] == 401
    assert request(protected.base, "GET", "/no/such/thing", bearer(READ_TOKEN))[0] == 404
    status, headers, _ = request(protected.base, "PUT", "/api/v1/status", bearer(READ_TOKEN), body={})
    assert status == 405 and "GET" in headers["Allow"]


def test_writes_need_the_write_token_whatever_reads_accept(protected):
    base = protected.base
    silence = {"matchers": {"grid": "G1"}, "duration": "1m", "createdBy": "test"}
    for creds in ({}, bearer(READ_TOKEN), basic(USER, PASSWORD), bearer(INGEST_TOKEN)):
        status, headers, body = request(base, "POST", "/api/v1/silences", creds, silence)
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer", (creds, body)
        assert request(base, "POST", "/api/v1/reload", creds)[0] == 401
    status, _, body = request(base, "POST", "/api/v1/silences", bearer(WRITE_TOKEN), silence)
    assert status == 201, body
    row = {"report_id": "R1", "grid_id": "G1", "kind": "daily", "period": "2026-11-21"}
    for creds in ({}, bearer(READ_TOKEN), bearer(WRITE_TOKEN), basic(USER, PASSWORD)):
        assert request(base, "POST", "/api/v1/ingest/reports", creds, row)[0] == 401
    assert request(base, "POST", "/api/v1/ingest/reports", bearer(INGEST_TOKEN), row)[0] == 201


def test_reads_are_open_by_default_and_writes_closed(tmp_path):
    port = free_port()
    with DaemonProcess(write_config(tmp_path, port), port) as d:
        assert request(d.base, "GET", "/metrics")[0] == 200
        assert request(d.base, "GET", "/api/v1/openapi.json")[0] == 200
        status, _, body = request(d.base, "POST", "/api/v1/reload", bearer(WRITE_TOKEN))
        assert status == 403 and b"token_sha256" in body


# -- TLS -------------------------------------------------------------------------------------------


def make_certificate(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made by the ``openssl`` program."""
    openssl = require("openssl", "openssl")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN=gridwatch-test-{name}",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def served_certificate(port: int) -> bytes:
    """The DER certificate the server presents on a new connection."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as s:
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_tls_serves_https_and_takes_a_renewed_certificate_on_sighup(tmp_path):
    (tmp_path / "tls").mkdir()
    cert, key = make_certificate(tmp_path / "tls")
    port = free_port()
    config = write_config(tmp_path, port, PROTECTED + 'tls_cert = "tls/server.crt"\ntls_key = "tls/server.key"\n')
    base = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(cert))
    d = DaemonProcess(config, port).start(wait=False)
    try:
        wait_for(lambda: request(base, "GET", "/healthz", context=trusted)[0] == 200, 30, f"https\n{d.log()}")
        assert request(base, "GET", "/api/v1/status", bearer(READ_TOKEN), context=trusted)[0] == 200
        assert request(base, "GET", "/api/v1/status", context=trusted)[0] == 401
        with pytest.raises(urllib.error.URLError):  # not trusted without the certificate
            request(base, "GET", "/healthz", context=ssl.create_default_context())
        try:  # no plain HTTP on the port
            plain: int | None = request(f"http://127.0.0.1:{port}", "GET", "/healthz")[0]
        except (urllib.error.URLError, ConnectionError):
            plain = None
        assert plain != 200
        assert "listening on https://127.0.0.1" in d.log()

        first = served_certificate(port)
        new_cert, new_key = make_certificate(tmp_path, "renewed")
        new_cert.replace(cert)
        new_key.replace(key)
        d.send(signal.SIGHUP)
        wait_for(lambda: served_certificate(port) != first, 15, "the renewed certificate")
        renewed = ssl.create_default_context(cafile=str(cert))
        assert request(base, "GET", "/healthz", context=renewed)[0] == 200
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ('tls_cert = "missing.crt"\ntls_key = "missing.key"\n', "server.tls_cert: no such file: "),
        ('tls_cert = "tls/server.crt"\n', "server: set both tls_cert and tls_key, or neither"),
        ('tls_cert = "tls/server.crt"\ntls_key = "tls/other.key"\n', "server.tls_key: cannot use server.crt with"),
        ('tls_cert = "tls/server.key"\ntls_key = "tls/server.key"\n', "server.tls_key: cannot use server.key with"),
        ('tls_cert = "${EMPTY}"\ntls_key = "tls/server.key"\n', "server: tls_cert and tls_key name files"),
    ],
    ids=["missing", "cert-without-key", "mismatched-key", "not-a-certificate", "empty"],
)
def test_a_bad_tls_setting_is_a_config_error(tmp_path, keys, error):
    (tmp_path / "tls").mkdir()
    make_certificate(tmp_path / "tls")
    make_certificate(tmp_path / "tls", "other")
    config = write_config(tmp_path, free_port(), keys)
    env = {**os.environ, "EMPTY": ""}
    gridwatch = [sys.executable, "-m", "gridwatch"]
    result = subprocess.run([*gridwatch, "check-config", "-c", str(config)], capture_output=True, text=True, env=env)
    assert result.returncode == 2, result
    assert f"{config}: {error}" in result.stderr, result.stderr
    run = subprocess.run([*gridwatch, "run", "-c", str(config)], capture_output=True, timeout=30, env=env)
    assert run.returncode == 2 and error.encode() in run.stderr


@pytest.mark.component
def test_prometheus_scrapes_over_https_with_bearer_or_basic_credentials(tmp_path, prometheus):
    (tmp_path / "tls").mkdir()
    cert, _ = make_certificate(tmp_path / "tls")
    (tmp_path / "read-token").write_text(READ_TOKEN)
    (tmp_path / "password").write_text(PASSWORD)
    port = free_port()
    config = write_config(tmp_path, port, PROTECTED + 'tls_cert = "tls/server.crt"\ntls_key = "tls/server.key"\n')
    d = DaemonProcess(config, port).start(wait=False)
    try:
        target = {"targets": [f"127.0.0.1:{port}"]}
        tls = {"ca_file": str(cert)}
        prom = prometheus(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "bearer",
                        "scheme": "https",
                        "tls_config": tls,
                        "authorization": {"type": "Bearer", "credentials_file": str(tmp_path / "read-token")},
                        "static_configs": [target],
                    },
                    {
                        "job_name": "basic",
                        "scheme": "https",
                        "tls_config": tls,
                        "basic_auth": {"username": USER, "password_file": str(tmp_path / "password")},
                        "static_configs": [target],
                    },
                    {"job_name": "anonymous", "scheme": "https", "tls_config": tls, "static_configs": [target]},
                ],
            }
        )
        prom.query_until('count(up{job=~"bearer|basic"} == 1) == 2', timeout=30)
        prom.query_until('gridwatch_grid_light{job="basic",grid="G1"}', timeout=30)
        assert prom.query_until('up{job="anonymous"}', timeout=30)[0]["value"][1] == "0"
    finally:
        assert d.stop() == 0


def test_credentials_compare_exactly():
    users = {USER: password_digest(PASSWORD), "colon": password_digest("a:b:c"), "中文": password_digest("密码 ")}
    assert basic_matches(basic(USER, PASSWORD)["Authorization"], users)
    assert basic_matches(basic("colon", "a:b:c")["Authorization"], users)  # only the first ':' splits
    assert basic_matches(basic("中文", "密码 ")["Authorization"], users)  # UTF-8, spaces kept
    for header in (
        basic("中文", "密码")["Authorization"],
        basic(USER, "")["Authorization"],
        basic("", PASSWORD)["Authorization"],
        "Basic " + base64.b64encode(USER.encode()).decode(),  # no colon
        "Basic " + base64.b64encode(b"\xff:\xfe").decode(),  # not UTF-8
        "Basic",
        "",
        None,
    ):
        assert not basic_matches(header, users), header
    assert not basic_matches(basic(USER, PASSWORD)["Authorization"], {})
    assert bearer_matches_any(f"Bearer {READ_TOKEN}", [None, digest(WRITE_TOKEN), digest(READ_TOKEN)])
    assert not bearer_matches_any(f"Bearer {READ_TOKEN}", [None])


# -- limits and slow clients -------------------------------------------------------------------


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    return out


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n",
        b"GET /healthz?" + b"q" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(100)) + b"\r\n",
    ],
    ids=["one-huge-header", "huge-request-line", "100-headers"],
)
def test_an_oversized_request_head_is_refused_and_the_daemon_keeps_serving(protected, head):
    answer = raw_exchange(protected.port, head)
    assert answer.split(b" ", 2)[1] in (b"400", b"431"), answer[:200]
    assert request(protected.base, "GET", "/healthz")[0] == 200
    # a head just within the limits is served
    ok = raw_exchange(
        protected.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Ok: " + b"a" * 8000 + b"\r\n\r\n"
    )
    assert ok.startswith(b"HTTP/1.1 200")


def trickle(port: int, prefix: bytes, trickled: bytes, count: int, limit: float) -> dict[str, Any]:
    """``count`` connections each send ``prefix`` then ``trickled`` one byte every 0.5 s; meanwhile a
    normal client asks /healthz each round. Returns when every slow connection is closed by the
    server (or after ``limit`` seconds): how long each lasted and how the normal client fared."""
    began = time.monotonic()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    for s in socks:
        s.sendall(prefix)
        s.setblocking(False)
    lasted: dict[int, float] = {}
    sent = 0
    answers: list[tuple[int, float]] = []
    try:
        while len(lasted) < count and time.monotonic() - began < limit:
            for i, s in enumerate(socks):
                if i in lasted:
                    continue
                try:
                    s.send(trickled[sent % len(trickled) : sent % len(trickled) + 1])
                except OSError:  # reset or broken pipe: the server hung up
                    lasted[i] = time.monotonic() - began
            sent += 1
            t0 = time.monotonic()
            status = request(f"http://127.0.0.1:{port}", "GET", "/healthz")[0]
            answers.append((status, time.monotonic() - t0))
            # pace the attack: wait up to 0.5 s for the server to close a connection
            readable, _, _ = select.select([s for i, s in enumerate(socks) if i not in lasted], [], [], 0.5)
            for s in readable:
                try:
                    closed = s.recv(65536) == b""
                except OSError:
                    closed = True
                if closed:
                    lasted[socks.index(s)] = time.monotonic() - began
    finally:
        for s in socks:
            s.close()
    return {"lasted": lasted, "answers": answers, "bytes_sent": sent}


def test_a_slowloris_head_is_cut_off_within_client_timeout_while_others_are_served(protected):
    result = trickle(protected.port, b"GET /api/v1/status HTTP/1.1\r\n", b"X-Slow: keep-me-open\r\n", 20, 15)
    lasted = result["lasted"]
    assert len(lasted) == 20, f"{20 - len(lasted)} slow connections still open after 15 s"
    assert max(lasted.values()) < 2 + 3  # client_timeout = 2s, plus pacing rounds and slack for a busy machine
    assert result["answers"] and all(status == 200 and took < 2 for status, took in result["answers"])


def test_a_trickled_body_is_cut_off_with_408(protected):
    head = (
        b"POST /api/v1/silences HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + WRITE_TOKEN.encode() + b"\r\nContent-Length: 1000\r\n\r\n"
    )
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", protected.port), timeout=10) as s:
        s.sendall(head + b"{")
        answer = b""
        while not answer:
            readable, _, _ = select.select([s], [], [], 0.5)
            if readable:
                answer = s.recv(65536)
                break
            s.send(b" ")
            assert time.monotonic() - began < 10, "no answer to a trickled body"
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"the request body did not arrive in time"' in answer
    assert time.monotonic() - began < 2 + 2.5


def test_an_idle_connection_is_closed_after_client_timeout(protected):
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", protected.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):  # the answer, then the server's close
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and 1.5 < time.monotonic() - began < 2 + 2.5


# -- secrets ---------------------------------------------------------------------------------------

DB_PASSWORD = "S3cretPW-of-the-platform-db"
ROBOT_KEY = "R0botKey-0f-the-wecom-group"
DING_SECRET = "SECd1ngtalkSigningSecret"
HEADER_SECRET = "Hdr-ApiKey-S3cret"
SECRETS = [DB_PASSWORD, ROBOT_KEY, DING_SECRET, HEADER_SECRET, WRITE_TOKEN, READ_TOKEN, INGEST_TOKEN, PASSWORD]
LEAKY = f"""
[sources.platform]
type = "sql"
url = "postgresql+psycopg://gridwatch:{DB_PASSWORD}@127.0.0.1:1/grid?connect_timeout=2"

[sources.vendor]
type = "http"
url = "http://127.0.0.1:REFUSING/api/{{table}}?token=${{VENDOR_TOKEN}}"
headers = {{ X-Api-Key = "{HEADER_SECRET}" }}

[[checks]]
name = "platform_rows"
type = "sql"
source = "platform"
interval = "1s"
metric = "gridwatch_test_rows"
value = "n"
query = "SELECT 1 AS n"

[[checks]]
name = "vendor_visits"
type = "visits"
source = "vendor"
interval = "1s"

[notifiers.robot]
type = "wecom"
url = "http://127.0.0.1:REFUSING/cgi-bin/webhook/send?key={ROBOT_KEY}"

[notifiers.ding]
type = "dingtalk"
url = "http://127.0.0.1:1/robot/send?access_token={ROBOT_KEY}"
secret = "{DING_SECRET}"
"""
LEAKY_SERVER = f"""
token = "{WRITE_TOKEN}"
read_token = "${{READ_TOKEN}}"
basic_auth_users = {{ {USER} = "{password_digest(PASSWORD)}" }}
"""


def failed_deliveries(d: DaemonProcess, creds: dict[str, str], notifier: str) -> float:
    body = request(d.base, "GET", "/metrics", creds)[2].decode()
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "gridwatch_notifications_total" and sample.labels == {
                "notifier": notifier,
                "outcome": "failure",
            }:
                return sample.value
    return 0.0


def assert_no_secret(where: str, text: str | bytes) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    found = [s for s in SECRETS if s in text]
    assert not found, f"{where} shows {found}:\n{text[:3000]}"


class _Refusing(http.server.BaseHTTPRequestHandler):
    """A vendor API and a chat robot that refuse every request (403), as with a revoked key."""

    def _refuse(self) -> None:
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errcode": 93000, "errmsg": "invalid webhook url"}')

    do_GET = do_POST = _refuse

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def refusing() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_no_secret_in_check_config_logs_status_or_answers(tmp_path, refusing):
    port = free_port()
    env = {"READ_TOKEN": READ_TOKEN, "VENDOR_TOKEN": HEADER_SECRET}
    config = write_config(tmp_path, port, LEAKY_SERVER, LEAKY.replace("REFUSING", str(refusing)))
    gridwatch = [sys.executable, "-m", "gridwatch"]
    checked = subprocess.run([*gridwatch, "check-config", "-c", str(config)], capture_output=True, env=env, text=True)
    assert checked.returncode == 0, checked.stderr
    assert_no_secret("check-config", checked.stdout + checked.stderr)
    broken = tmp_path / "broken.toml"
    broken.write_text(
        config.read_text().replace(password_digest(PASSWORD), PASSWORD)  # a password pasted for its hash
        + '\n[sources.platform2]\ntype = "sql"\n'
        f'url = "postgresql://u:{DB_PASSWORD}@[::1:5432/db"\npool_size = 0\nbogus = "{ROBOT_KEY}"\n'
        f'[sources.inbox2]\ntype = "ingest"\ntoken_sha256 = "{WRITE_TOKEN}"\n'
    )
    failed = subprocess.run([*gridwatch, "check-config", "-c", str(broken)], capture_output=True, env=env, text=True)
    assert failed.returncode == 2 and "sources.platform2" in failed.stderr, failed.stderr
    assert "server.basic_auth_users" in failed.stderr and "sources.inbox2.token_sha256" in failed.stderr
    assert_no_secret("check-config of a broken config", failed.stdout + failed.stderr)

    answers = []
    with DaemonProcess(config, port, env=env, args=("--log-level", "debug")) as d:
        creds = basic(USER, PASSWORD)
        wait_for(lambda: failed_deliveries(d, creds, "robot"), 30, "a failed delivery to the robot")
        wait_for(lambda: request(d.base, "GET", "/readyz")[0] == 200, 30, "every check to have run")
        status = json.loads(request(d.base, "GET", "/api/v1/status", creds)[2])
        errors = {c["name"]: c["error"] for c in status["checks"]}
        assert errors["platform_rows"] and errors["vendor_visits"], status  # they failed, and say why
        for path in [*READ_PATHS, "/healthz", "/readyz", "/api/v1/grids/G3"]:
            answers.append((path, request(d.base, "GET", path, creds)))
        answers.append(("wrong password", request(d.base, "GET", "/metrics", basic(USER, PASSWORD[:-1] + "x"))))
        config.write_text(config.read_text() + f'\n[sources.bad]\ntype = "sql"\nurl = "{DB_PASSWORD}"\n')
        answers.append(("reload", request(d.base, "POST", "/api/v1/reload", bearer(WRITE_TOKEN))))
        assert answers[-1][1][0] == 422
        d.stop()
        log = d.log()
    assert "reload rejected" in log and "notifier robot" in log
    assert_no_secret("the daemon's log", log)
    for what, (_, headers, body) in answers:
        assert_no_secret(what, body + json.dumps(headers).encode())
