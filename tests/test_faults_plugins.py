"""Plugins that misbehave inside a running daemon, and reloads while checks are running.

A plugin directory (``[plugins] dirs``) holds check types that raise, hang, call ``sys.exit()``,
yield forever or yield garbage (a dict, NaN, text for a number, a 5,000-character label, a bad
metric name). Each is reported by check name and plugin (log, status API, run counter), none
reaches ``/metrics``, the well-behaved check keeps its schedule and the daemon keeps running.

Reloads (SIGHUP and ``POST /api/v1/reload``, one at a time and in a burst) while a slow check is
in the middle of a run: the run in flight completes (or, past the grace period, is cancelled and
its worker waited for), runs never overlap, the new config takes effect, nothing crashes.
"""

from __future__ import annotations

import signal
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gridwatch.testing import DaemonProcess, free_port, wait_for
from tests.faults import runs, status_of

MISBEHAVE = '''
"""Check types that misbehave on purpose."""

import sys
import time

from gridwatch import hookimpl
from gridwatch.api import Check, Options, Sample


class _Base(Check):
    needs_source = False


class Good(_Base):
    type = "good"
    metrics = {"gridwatch_test_good": "A constant"}

    def run(self, ctx):
        yield Sample("gridwatch_test_good", {}, 1)


class Raiser(_Base):
    type = "raiser"

    def run(self, ctx):
        raise ValueError("a bad day in the plugin")


class Hanger(_Base):
    type = "hanger"

    def run(self, ctx):
        time.sleep(3600)
        return []


class Exiter(_Base):
    type = "exiter"

    def run(self, ctx):
        sys.exit(3)


class AsyncExiter(_Base):
    type = "async_exiter"

    async def run(self, ctx):
        raise SystemExit(4)


class Endless(_Base):
    type = "endless"

    def run(self, ctx):
        while True:
            yield Sample("gridwatch_test_endless", {}, 1)


class NotIterable(_Base):
    type = "not_iterable"

    def run(self, ctx):
        return 5


class Garbage(_Base):
    type = "garbage"

    class Options(Options):
        kind: str

    def run(self, ctx):
        yield Sample("gridwatch_test_garbage", {"grid": "G1"}, 1)  # a good one first: all or nothing
        kind = self.options.kind
        if kind == "dict":
            yield {"metric": "gridwatch_test_garbage", "labels": {}, "value": 1}
        elif kind == "nan":
            yield Sample("gridwatch_test_garbage", {"grid": "G2"}, float("nan"))
        elif kind == "text":
            yield Sample("gridwatch_test_garbage", {"grid": "G2"}, "many")
        elif kind == "huge_label":
            yield Sample("gridwatch_test_garbage", {"grid": "G" * 5000}, 1)
        elif kind == "bad_name":
            yield Sample("gridwatch-test-garbage", {}, 1)


@hookimpl
def register_check_types():
    return [Good, Raiser, Hanger, Exiter, AsyncExiter, Endless, NotIterable, Garbage]
'''

# check name: (outcome, what its error says)
EXPECTED = {
    "raiser": ("failure", "raiser (plugin misbehave): ValueError: a bad day in the plugin"),
    "hanger": ("timeout", "timed out after 0.5s"),
    "exiter": ("failure", "exiter (plugin misbehave): PluginExit: the check raised SystemExit(3)"),
    "async_exiter": ("failure", "async_exiter (plugin misbehave): PluginExit: the check raised SystemExit(4)"),
    "endless": ("timeout", "timed out after 1s"),
    "not_iterable": ("failure", "not_iterable (plugin misbehave): TypeError: 'int' object is not iterable"),
    "garbage_dict": ("failure", "garbage (plugin misbehave): a check yielded dict, not a Sample"),
    "garbage_nan": ("failure", "garbage (plugin misbehave): value of gridwatch_test_garbage is NaN"),
    "garbage_text": ("failure", "garbage (plugin misbehave): value of gridwatch_test_garbage is not a number: 'many'"),
    "garbage_huge_label": ("failure", "garbage (plugin misbehave): label grid on gridwatch_test_garbage is longer"),
    "garbage_bad_name": ("failure", "garbage (plugin misbehave): invalid metric name 'gridwatch-test-garbage'"),
}


def misbehave_config(tmp_path: Path, port: int) -> Path:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "misbehave.py").write_text(MISBEHAVE, encoding="utf-8")
    checks = ['[[checks]]\nname = "good"\ntype = "good"\ninterval = "500ms"\n']
    for name in EXPECTED:
        kind = name.removeprefix("garbage_")
        check_type = "garbage" if name.startswith("garbage_") else name
        timeout = {"hanger": "500ms", "endless": "1s"}.get(name, "5s")
        checks.append(f'[[checks]]\nname = "{name}"\ntype = "{check_type}"\ninterval = "1s"\ntimeout = "{timeout}"\n')
        if check_type == "garbage":
            checks[-1] += f'kind = "{kind}"\n'
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[state]\npath = "state.db"\n[plugins]\ndirs = ["plugins"]\n'
        + "\n".join(checks),
        encoding="utf-8",
    )
    return cfg


def test_plugins_that_raise_hang_exit_or_yield_garbage_are_named_isolated_and_survived(tmp_path):
    port = free_port()
    with DaemonProcess(misbehave_config(tmp_path, port), port) as d:
        wait_for(lambda: d.get("/readyz")[0] == 200, 15, f"every check to have run once\n{d.log()}")
        # a while later: everything failed at least twice, and the daemon is still here
        wait_for(
            lambda: all(runs(d, n, o) >= 2 for n, (o, _) in EXPECTED.items() if n != "hanger"),
            15,
            f"every check to fail twice\n{d.log()[-5000:]}",
        )
        assert d.proc is not None and d.proc.poll() is None
        for name, (outcome, error) in EXPECTED.items():
            st = status_of(d, "checks", name)
            assert st["ok"] is False and error in st["error"], (name, st)
            assert runs(d, name, "success") == 0
            assert f"check {name} {outcome}: " in d.log(), name  # the log names it too
        # the hung worker is still sleeping: its runs are skipped, never stacked up; the endless
        # generator was stopped at its deadline: its worker is free for every next run
        wait_for(lambda: runs(d, "hanger", "skipped") >= 1, 5, "the hung check skipped")
        assert runs(d, "hanger", "timeout") == 1
        assert runs(d, "endless", "skipped") == 0
        # the good check kept its schedule all along, and /metrics holds nothing of the garbage
        before, t0 = runs(d, "good"), time.monotonic()
        wait_for(lambda: runs(d, "good") >= before + 4, 5, "four more runs of the good check")
        assert time.monotonic() - t0 < 4
        status, body = d.get("/metrics")
        names = {f.name for f in text_string_to_metric_families(body.decode())}
        assert status == 200 and "gridwatch_test_good" in names
        assert not names & {"gridwatch_test_garbage", "gridwatch_test_endless", "gridwatch-test-garbage"}
        assert "G" * 2000 not in body.decode()
        assert d.stop() == 0


SLOTH = '''
"""A slow check that writes down when each run starts and ends."""

import os
import time

from gridwatch import hookimpl
from gridwatch.api import Check, Options, Sample


class Sloth(Check):
    type = "sloth"
    needs_source = False
    metrics = {"gridwatch_test_sloth": "The configured value, slowly"}

    class Options(Options):
        seconds: float
        value: float
        journal: str

    def run(self, ctx):
        tag = f"{os.getpid()}-{id(self)}-{time.monotonic_ns()}"
        with open(self.options.journal, "a") as f:
            f.write(f"start {tag} {self.options.value:g}\\n")
        time.sleep(self.options.seconds)
        with open(self.options.journal, "a") as f:
            f.write(f"end {tag}\\n")
        yield Sample("gridwatch_test_sloth", {}, self.options.value)


@hookimpl
def register_check_types():
    return [Sloth]
'''
TOKEN = "reload-token-for-tests"


def sloth_config(tmp_path: Path, port: int, value: int, seconds: float = 1.5) -> Path:
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "sloth.py").write_text(SLOTH, encoding="utf-8")
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        [server]
        listen = "127.0.0.1:{port}"
        token = "{TOKEN}"
        [state]
        path = "state.db"
        [plugins]
        dirs = ["plugins"]
        [[checks]]
        name = "sloth"
        type = "sloth"
        interval = "1s"
        timeout = "20s"
        seconds = {seconds}
        value = {value}
        journal = "{tmp_path / "journal.txt"}"
        [[checks]]
        name = "fast"
        type = "constant"
        interval = "500ms"
        value = {value}
        """),
        encoding="utf-8",
    )
    return cfg


def journal(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "journal.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def in_flight(tmp_path: Path) -> bool:
    """A run has started and not ended (the last journal line is a start)."""
    lines = journal(tmp_path)
    return bool(lines) and lines[-1][0] == "start"


def assert_runs_never_overlapped(tmp_path: Path) -> tuple[int, int]:
    """Every run that started ended before the next one started; returns (runs, unfinished)."""
    active: set[str] = set()
    starts = 0
    for event, tag, *_ in journal(tmp_path):
        if event == "start":
            assert not active, f"run {tag} started while {active} was still going"
            active.add(tag)
            starts += 1
        else:
            active.discard(tag)
    return starts, len(active)


def post_reload(port: int) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/reload", method="POST", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status


def sloth_daemon(tmp_path: Path) -> tuple[DaemonProcess, int]:
    from tests.test_plugins import FIXTURE_PLUGINS  # the constant check type

    port = free_port()
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "faulty.py").write_text((FIXTURE_PLUGINS / "faulty.py").read_text(), encoding="utf-8")
    return DaemonProcess(sloth_config(tmp_path, port, 1), port), port


def assert_clean(d: DaemonProcess, tmp_path: Path, min_runs: int) -> None:
    """No run overlapped another, none failed, the daemon never stumbled."""
    started, unfinished = assert_runs_never_overlapped(tmp_path)
    assert started >= min_runs and unfinished <= 1
    assert runs(d, "sloth", "failure") == runs(d, "sloth", "timeout") == 0
    assert runs(d, "fast", "failure") == 0
    assert "Traceback" not in d.log() and " ERROR " not in d.log()
    assert d.metric("gridwatch_config_last_reload_successful") == 1


def test_reloads_while_a_slow_check_runs_lose_no_run_and_take_effect(tmp_path):
    d, port = sloth_daemon(tmp_path)
    with d:
        wait_for(lambda: d.metric("gridwatch_test_sloth") == 1, 15, f"the first slow run\n{d.log()}")

        # SIGHUP in the middle of a run: that run completes, then the new config runs
        wait_for(lambda: in_flight(tmp_path), 5, "a run in flight")
        reloading = journal(tmp_path)[-1][1]
        sloth_config(tmp_path, port, 2)
        d.send(signal.SIGHUP)
        wait_for(lambda: d.metric("gridwatch_test_sloth") == 2, 15, f"the new value\n{d.log()[-3000:]}")
        assert ["end", reloading] in journal(tmp_path)
        assert d.metric("gridwatch_test_constant", check="fast") == 2

        # a burst: the API and three SIGHUPs at once (the kernel may merge signals still pending),
        # again mid-run: one reload after the other, each complete
        wait_for(lambda: in_flight(tmp_path), 5, "a run in flight")
        sloth_config(tmp_path, port, 3)
        answers: list[int] = []
        api = threading.Thread(target=lambda: answers.append(post_reload(port)))
        api.start()
        for _ in range(3):
            d.send(signal.SIGHUP)
        api.join(60)
        assert answers == [200]
        wait_for(lambda: d.log().count("config reloaded") >= 3, 30, f"the burst's reloads\n{d.log()[-3000:]}")
        wait_for(lambda: d.metric("gridwatch_test_sloth") == 3, 15, "the burst's value")

        assert_clean(d, tmp_path, 4)
        assert d.stop() == 0


@pytest.mark.soak
def test_a_reload_cancels_a_run_past_its_grace_and_the_next_runs_wait_for_its_worker(tmp_path):
    d, _ = sloth_daemon(tmp_path)
    with d:
        wait_for(lambda: d.metric("gridwatch_test_sloth") == 1, 15, f"the first slow run\n{d.log()}")
        sloth_config(tmp_path, d.port, 4, seconds=9)
        d.send(signal.SIGHUP)
        wait_for(lambda: d.log().count("config reloaded") == 1, 15, "the reload to 9 s runs")
        wait_for(lambda: in_flight(tmp_path) and journal(tmp_path)[-1][2] == "4", 10, "a 9 s run in flight")
        sloth_config(tmp_path, d.port, 5, seconds=0.2)
        d.send(signal.SIGHUP)  # the run has 5 s to finish, needs 9: it is cancelled
        wait_for(lambda: "cancelled 1 check run(s) still going at reload" in d.log(), 10, "the cancellation")
        wait_for(lambda: d.metric("gridwatch_test_sloth") == 5, 20, f"the value after it\n{d.log()[-3000:]}")
        assert d.log().count("config reloaded") == 2
        assert_clean(d, tmp_path, 3)  # the new config's first run began after the old worker ended
        assert d.stop() == 0
