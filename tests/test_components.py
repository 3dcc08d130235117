"""The test helpers in tests/components.py work against the real programs."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error

import psycopg
import pytest
import sqlalchemy

from tests.components import Alertmanager, ComponentError, MariaDBServer, PostgresServer, require

component = pytest.mark.component


def test_require_skips_on_a_laptop_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install the Debian package gw-nonesuch"):
        require("gridwatch-no-such-program", "gw-nonesuch")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="install the Debian package gw-nonesuch"):
        require("gridwatch-no-such-program", "gw-nonesuch")


@component
def test_promtool_version() -> None:
    promtool = require("promtool", "prometheus")
    result = subprocess.run([promtool, "--version"], capture_output=True, text=True, timeout=30, check=True)
    assert "promtool, version" in result.stdout + result.stderr


@component
def test_postgres_roundtrip(postgres: PostgresServer) -> None:
    assert postgres.url.startswith(f"postgresql+psycopg://{postgres.user}@127.0.0.1:")
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS components_probe")
        conn.execute("CREATE TABLE components_probe (id serial PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO components_probe (name) VALUES (%s), (%s)", ("网格", "grid"))
        rows = conn.execute("SELECT name FROM components_probe ORDER BY id").fetchall()
        conn.execute("DROP TABLE components_probe")
    assert rows == [("网格",), ("grid",)]

    engine = sqlalchemy.create_engine(postgres.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT current_database()")).scalar() == (postgres.dbname)
    finally:
        engine.dispose()


@component
def test_mariadb_roundtrip(mariadb: MariaDBServer) -> None:
    """Over TCP, as the password-protected user, in utf8mb4 (four-byte characters too)."""
    url = mariadb.createdb("components_probe")
    assert url.startswith(f"mysql+pymysql://{mariadb.user}:{mariadb.password}@127.0.0.1:{mariadb.port}/")
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE probe (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20) NOT NULL)")
            conn.exec_driver_sql("INSERT INTO probe (name) VALUES ('网格'), ('𠀋')")
            rows = conn.exec_driver_sql("SELECT name FROM probe ORDER BY id").fetchall()
    finally:
        engine.dispose()
    assert [name for (name,) in rows] == ["网格", "𠀋"]
    wrong = sqlalchemy.create_engine(url.replace(mariadb.password, "wrong"))
    with pytest.raises(sqlalchemy.exc.OperationalError, match="Access denied"):
        wrong.connect()
    wrong.dispose()


@component
def test_mariadb_stops_and_leaves_nothing_behind() -> None:
    server = MariaDBServer()
    with server:
        pid = server._process.popen.pid if server._process.popen else None
        assert pid is not None and server.socket.exists()
    assert not server.running and not server.dir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def _alert(name: str) -> dict[str, object]:
    return {
        "labels": {"alertname": name, "severity": "warning"},
        "annotations": {"summary": f"{name} from the component test"},
    }


@component
def test_alertmanager_receives_alerts_and_survives_restart(alertmanager) -> None:
    am = alertmanager()
    am.post_alerts([_alert("GridwatchProbe")])
    assert [a["labels"]["alertname"] for a in am.alerts()] == ["GridwatchProbe"]

    url = am.url
    am.stop()
    with pytest.raises(urllib.error.URLError):  # the outage is real
        am.alerts()

    am.start()
    assert am.url == url
    am.post_alerts([_alert("GridwatchProbeAgain")])
    names = {a["labels"]["alertname"] for a in am.alerts()}
    assert "GridwatchProbeAgain" in names


@component
def test_alertmanager_start_failure_shows_the_log(tmp_path) -> None:
    broken = Alertmanager("route: [this is not a route", directory=tmp_path, startup_timeout=10)
    with pytest.raises(ComponentError, match=r"(?s)alertmanager did not start.*last lines"):
        broken.start()
    assert not broken.running


@component
def test_prometheus_scrapes_itself(prometheus) -> None:
    prom = prometheus(
        lambda p: {
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [{"job_name": "self", "static_configs": [{"targets": [p.address]}]}],
        }
    )
    began = time.monotonic()
    result = prom.query_until('up{job="self"} == 1', timeout=20)
    assert result[0]["metric"]["instance"] == prom.address
    assert result[0]["value"][1] == "1"
    assert time.monotonic() - began < 20
