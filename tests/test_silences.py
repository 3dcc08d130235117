"""Silences through the API (bearer token for writes) and the CLI; `gridwatch alerts`."""

import hashlib
import json
import subprocess
import sys
import urllib.request

from gridwatch.testing import DaemonProcess, free_port, wait_for
from tests.test_alertmanager import write_config, write_data

TOKEN = "board-operator-token"


def call(d: DaemonProcess, method: str, path: str, body=None, token: str | None = TOKEN):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(d.base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def cli(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "gridwatch", *args, "-c", str(tmp_path / "gridwatch.toml")]
        if args[0] != "silence"
        else [sys.executable, "-m", "gridwatch", "silence", "-c", str(tmp_path / "gridwatch.toml"), *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
    )


def alert_of(d: DaemonProcess, grid: str) -> dict | None:
    return next((a for a in d.json("/api/v1/alerts") if a["labels"].get("grid") == grid), None)


def test_silences_over_the_api_and_the_cli(tmp_path):
    write_data(tmp_path, {"G1": 9, "G2": 1})  # G1 above critical (8)
    port = free_port()
    cfg = write_config(tmp_path, port, "http://127.0.0.1:9/hook")
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    cfg.write_text(cfg.read_text().replace("[state]", f'token_sha256 = "{digest}"\n\n[state]', 1))
    with DaemonProcess(cfg, port) as d:
        wait_for(lambda: (alert_of(d, "G1") or {}).get("state") == "firing", 15, "the alert")
        a = alert_of(d, "G1")
        assert set(a) >= {"alert", "labels", "state", "severity", "value", "active_since", "summary"}
        assert (a["alert"], a["severity"], a["value"], a["silenced"]) == ("TestValueHigh", "critical", 9.0, False)
        assert a["summary"] == "东湖一网格测试值过高：9"

        body = {
            "matchers": [{"name": "grid", "value": "G1", "isRegex": False}],
            "duration": "2h",
            "createdBy": "李主任",
            "comment": "正在处置",
        }
        assert call(d, "POST", "/api/v1/silences", body, token=None)[0] == 401
        assert call(d, "POST", "/api/v1/silences", body, token="wrong")[0] == 401
        status, silence = call(d, "POST", "/api/v1/silences", body)
        assert status == 201 and silence["status"]["state"] == "active" and silence["createdBy"] == "李主任"
        assert alert_of(d, "G1")["silenced"] is True
        assert call(d, "POST", "/api/v1/silences", {"matchers": []})[0] == 400

        listed = cli(tmp_path, "silence", "list")
        assert silence["id"] in listed.stdout and "grid=G1" in listed.stdout and "正在处置" in listed.stdout

        assert call(d, "DELETE", f"/api/v1/silences/{silence['id']}", token=None)[0] == 401
        assert call(d, "DELETE", f"/api/v1/silences/{silence['id']}")[0] == 200
        wait_for(lambda: alert_of(d, "G1")["silenced"] is False, 5, "the silence to end")

        # the CLI writes to the same state database the daemon reads
        added = cli(tmp_path, "silence", "add", "alertname=TestValueHigh", "--duration", "1h", "--author", "ops")
        assert added.returncode == 0, added.stderr
        wait_for(lambda: alert_of(d, "G1")["silenced"] is True, 5, "the CLI's silence")
        assert cli(tmp_path, "silence", "expire", added.stdout.strip()).returncode == 0

        shown = json.loads(cli(tmp_path, "alerts", "--json").stdout)
        assert [(x["alert"], x["labels"]["grid"], x["state"]) for x in shown] == [("TestValueHigh", "G1", "firing")]
        assert d.metric("gridwatch_alerts", state="firing", severity="critical") == 1
