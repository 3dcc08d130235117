"""One gridwatch per state database, and a state database that disappears under a running daemon.

Real processes on real files: a second ``gridwatch run`` (or ``gridwatch once``) on a state
database a daemon holds is refused with one line and exit 1; two processes creating a fresh state
database at the same instant both succeed; a state database deleted while the daemon runs is
written again from the file the daemon still has open (nothing lost), and ``gridwatch silence
add`` meanwhile refuses instead of creating a file the daemon would never read; one replaced by
another file is reported not writable until a restart.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gridwatch.store import MIGRATIONS, Store
from gridwatch.testing import DaemonProcess, free_port, wait_for
from tests.faults import read_state
from tests.test_alertmanager import hook_alerts, write_config, write_data
from tests.test_notifiers import Recorder


@pytest.fixture
def recorder() -> Any:
    r = Recorder().start()
    try:
        yield r
    finally:
        r.stop()


def gridwatch(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gridwatch", *args], capture_output=True, text=True, timeout=timeout)


def quiet_config(tmp_path: Path, port: int, hook: str) -> Path:
    """test_alertmanager's daemon, its check and its evaluations an hour apart: after the first
    round it writes nothing until a reload (which runs the checks) makes it."""
    cfg = write_config(tmp_path, port, hook)
    text = cfg.read_text(encoding="utf-8")
    text = text.replace('evaluation_interval = "1s"', 'evaluation_interval = "1h"')
    text = text.replace('interval = "1s"', 'interval = "1h"')
    cfg.write_text(text, encoding="utf-8")
    return cfg


# -- one gridwatch per state database ----------------------------------------------------------


def test_a_second_daemon_on_the_same_state_database_is_refused(tmp_path, recorder):
    """A second daemon is refused; ``once`` keeps its state in a database of its own, so it runs
    beside the daemon and leaves the daemon's untouched (DOMAIN.md §5: a replay writes nothing)."""
    write_data(tmp_path, {"G1": 1, "G2": 1})
    port, other = free_port(), free_port()
    cfg = quiet_config(tmp_path, port, f"{recorder.url}/hook")  # writes nothing after its first round
    second = tmp_path / "second.toml"
    second.write_text(cfg.read_text(encoding="utf-8").replace(f"127.0.0.1:{port}", f"127.0.0.1:{other}"))
    with DaemonProcess(cfg, port) as d:
        wait_for(lambda: d.get("/readyz")[0] == 200, 15, "readiness")
        for args in (("run", "-c", str(second)),):
            try:
                res = gridwatch(*args, timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail(f"gridwatch {args[0]} ran beside the daemon on its state database")
            lines = res.stderr.strip().splitlines()
            assert res.returncode == 1, (args, res.stderr)
            assert lines == [
                f"gridwatch: the state database {tmp_path / 'state.db'} is in use by another gridwatch "
                f"process (pid {d.proc.pid}): one gridwatch per state database"
            ], res.stderr
        before = (tmp_path / "state.db").read_bytes()
        assert gridwatch("once", "-c", str(cfg)).returncode == 0
        assert (tmp_path / "state.db").read_bytes() == before
        assert d.get("/readyz")[0] == 200  # the first one never noticed
        assert d.stop() == 0
    assert gridwatch("once", "-c", str(cfg)).returncode == 0  # the lock goes with its process


def _open_at(path: str, barrier: Any, errors: Any) -> None:
    barrier.wait()
    try:
        store = Store(Path(path))
        store.open()
        store.close()
    except Exception as exc:  # reported to the test, which names it
        errors.put(f"{type(exc).__name__}: {exc}")


def test_two_processes_creating_a_fresh_state_database_at_once_both_succeed(tmp_path):
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    for i in range(20):
        path = tmp_path / f"state-{i}.db"
        barrier = ctx.Barrier(2)
        procs = [ctx.Process(target=_open_at, args=(str(path), barrier, errors)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        assert read_state(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []


# -- the state database deleted or replaced under the daemon -------------------------------------


def test_a_deleted_state_database_is_written_again_and_the_cli_never_makes_a_stray_one(tmp_path, recorder):
    write_data(tmp_path, {"G1": 9, "G2": 1})
    port = free_port()
    cfg = quiet_config(tmp_path, port, f"{recorder.url}/hook")
    state = tmp_path / "state.db"
    with DaemonProcess(cfg, port) as d:
        wait_for(lambda: hook_alerts(recorder, "G1"), 15, f"the firing notification\n{d.log()}")
        wait_for(lambda: d.metric("gridwatch_notification_queue_length", notifier="hook") == 0, 10, "delivery")
        gone = sorted(p.name for p in tmp_path.glob("state.db*"))
        for p in tmp_path.glob("state.db*"):  # rm state.db*
            p.unlink()
        assert gone == ["state.db", "state.db-shm", "state.db-wal"]

        # the daemon has not written since: the CLI must not create a file the daemon would not read
        added = gridwatch("silence", "-c", str(cfg), "add", "grid=G1", "--author", "ops")
        assert added.returncode == 1 and not state.exists(), added
        assert added.stderr.strip().splitlines() == [
            f"gridwatch: the state database {state} is missing while a gridwatch process (pid {d.proc.pid}) "
            "runs on it: it writes it again at its next write; try again then"
        ]

        d.send(signal.SIGHUP)  # a reload runs the check: its run is written, and finds the file gone
        wait_for(lambda: state.exists() and read_state(state, "SELECT state FROM alerts"), 15, f"the file\n{d.log()}")
        assert read_state(state, "SELECT state, json_extract(labels, '$.grid') FROM alerts") == [("firing", "G1")]
        assert read_state(state, "SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL") == [(1,)]
        errors = [line for line in d.log().splitlines() if " ERROR " in line]
        assert len(errors) == 1 and "was deleted while gridwatch ran" in errors[0], errors
        assert d.json("/api/v1/status")["state_database"] == {"writable": True, "error": None}
        assert d.metric("gridwatch_state_db_writable") == 1

        # the CLI now writes where the daemon reads
        added = gridwatch("silence", "-c", str(cfg), "add", "grid=G1", "--author", "ops")
        assert added.returncode == 0, added.stderr
        d.send(signal.SIGHUP)  # the next evaluation picks the silence up
        wait_for(lambda: d.json("/api/v1/alerts")[0]["silenced"] is True, 15, "the CLI's silence")
        assert [a["status"] for a in hook_alerts(recorder, "G1")] == ["firing"]  # nothing sent again
        assert d.stop() == 0


@pytest.mark.parametrize("deleted", [("",), ("", "-wal", "-shm")], ids=["state.db", "state.db*"])
def test_a_deleted_state_database_is_written_again_whole_with_or_without_its_wal(tmp_path, deleted):
    path = tmp_path / "state.db"
    store = Store(path)
    store.open(exclusive=True)
    try:
        for i in range(30):  # in the WAL, not yet checkpointed into the file
            store.call_write(store.record_run, "c", float(i), 0.1, "success", None)
        for suffix in deleted:
            Path(f"{path}{suffix}").unlink()
        store.call_write(store.record_run, "c", 30.0, 0.1, "success", None)  # finds the file gone
        store.call_write(store.record_run, "c", 31.0, 0.1, "success", None)  # and writes on at the path
        assert read_state(path, "PRAGMA integrity_check") == [("ok",)]
        assert read_state(path, "SELECT count(*), max(started_at) FROM check_runs") == [(32, 31.0)]
        assert read_state(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    finally:
        store.close()


def test_a_replaced_state_database_is_reported_not_writable(tmp_path, recorder):
    write_data(tmp_path, {"G1": 1, "G2": 1})
    port = free_port()
    cfg = write_config(tmp_path, port, f"{recorder.url}/hook")
    state = tmp_path / "state.db"
    with DaemonProcess(cfg, port) as d:
        wait_for(lambda: d.get("/readyz")[0] == 200, 15, "readiness")
        shutil.copy(state, tmp_path / "restored.db")
        (tmp_path / "restored.db").replace(state)  # a backup restored under the running daemon

        wait_for(lambda: d.metric("gridwatch_state_db_writable") == 0, 10, f"not writable\n{d.log()[-2000:]}")
        status, body = d.get("/readyz")
        ready = json.loads(body)
        assert status == 503 and "state database" in ready["waiting_for"], ready
        assert "was replaced while gridwatch ran" in ready["state_database"]["error"]
        assert d.json("/api/v1/status")["state_database"] == ready["state_database"]
        errors = [line for line in d.log().splitlines() if " ERROR " in line]
        assert len(errors) == 1 and "was replaced while gridwatch ran" in errors[0], errors
        assert d.get("/healthz")[0] == 200
        assert d.stop() == 0


def test_without_a_daemon_the_cli_still_creates_the_state_database(tmp_path):
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(textwrap.dedent('[state]\npath = "state.db"\n'), encoding="utf-8")
    res = gridwatch("alerts", "-c", str(cfg))
    assert res.returncode == 0 and res.stderr == "" and (tmp_path / "state.db").exists()
