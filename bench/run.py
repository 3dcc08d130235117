"""``make bench``: how much work gridwatch does for the four domain checks, against targets,
on SQLite and on PostgreSQL.

One run generates (or reuses) a demo city and plans the changes of the steady run from it.
Then, for each database (``--db``): the city in that database (a copy of the file; a private
PostgreSQL server with the city loaded once), the first full run of the checks against the
same figures in plain SQL, the planned changes and the next run on the same runtime, a real
daemon scraped and restarted (after SIGTERM and after SIGKILL), and query-exporter on the same
queries and database. It prints one table (Markdown), a column per database, and writes it to
``--out``. ``--quick`` does the same on a tiny city for CI: every step must work and every
answer agree, but no figure is held to its target.

Exit status: 0 when every step ran and the answers agree (with ``--strict``: and every target
is met), 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

if __package__ in (None, ""):  # run as a script (python bench/run.py): make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import changes, daemon, floor, qe, report, second
from bench.report import NA, NO, NONE, Row, count, megabytes, percent, ratio, seconds, size, verdict
from gridwatch import __version__, schema
from gridwatch.testing import free_port, with_listen
from gridwatch.tools import demo

ROOT = Path(__file__).resolve().parent.parent
TZ = "Asia/Shanghai"
CHECKS = ("visits", "patrols", "incidents", "reports")
TABLES = ("grids", "households", "visits", "patrols", "incidents", "reports")
DATABASES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
STEADY_AFTER = timedelta(minutes=5)
RSS_TARGET_KB = 300 * 1024  # at 10,000 grids
T = TypeVar("T")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def metrics_target(grids: int) -> float:
    """/metrics must answer in 250 ms at 2,000 grids and 1 s at 10,000 (linear in between)."""
    return 0.25 + 0.75 * min(1.0, max(0.0, (grids - 2000) / 8000))


def restart_target(grids: int) -> float:
    """Restart to /readyz in 5 s at 2,000 grids and 15 s at 10,000 (linear in between)."""
    return 5.0 + 10.0 * min(1.0, max(0.0, (grids - 2000) / 8000))


CITIES = {
    "demo": "the demo city (`gridwatch demo`)",
    "second": "the second city (bench/second.py: integer ids, times with offsets and microseconds)",
}


def dataset(work: Path, grids: int, days: int, seed: int, now: datetime, city: str = "demo") -> Path:
    """The city for these parameters, generated once and kept under the work directory;
    a changed generator (its source) makes a new one."""
    modules = (demo, schema) if city == "demo" else (demo, schema, second)
    made_by = hashlib.sha256(b"".join(Path(m.__file__ or "").read_bytes() for m in modules)).hexdigest()[:8]
    prefix = "city" if city == "demo" else city
    path = work / "data" / f"{prefix}-g{grids}-d{days}-s{seed}-{now.strftime('%Y%m%dT%H%M%S%z')}-{made_by}.db"
    if path.exists():
        log(f"dataset: reusing {path.name}")
        return path
    log(f"dataset: generating {city}: {grids} grids x {days} days (once; kept in {path.parent.name}/)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if city == "second":
        second.generate(path, grids=grids, days=days, seed=seed, now=now)
        return path
    argv = ["demo", "--db", str(path), "--grids", str(grids), "--days", str(days), "--seed", str(seed)]
    cmd = [sys.executable, "-m", "gridwatch", *argv, "--now", now.isoformat()]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=sys.stderr)  # stdout is for the table alone
    return path


def gridwatch_config(path: Path, source: str, state: str, timeout: str) -> Path:
    """The four domain checks on the city (``source``: the TOML of ``[sources.city]``).
    Intervals are long: the bench decides when they run in-process, and in the daemon nothing
    should run beside the scrapes."""
    checks = "".join(
        f'\n[[checks]]\nname = "{c}"\ntype = "{c}"\nsource = "city"\ninterval = "6h"\ntimeout = "{timeout}"\n'
        for c in CHECKS
    )
    path.write_text(
        f'timezone = "{TZ}"\n\n[state]\npath = "{state}"\n\n[grids]\nsource = "city"\n\n'
        f"[sources.city]\n{source}\n{checks}",
        encoding="utf-8",
    )
    return path


class Steps:
    """Runs the steps, keeping going after a failure so the table shows what did work."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def run(self, name: str, fn: Callable[[], T]) -> T | None:
        log(f"{name} ...")
        started = time.monotonic()
        try:
            result = fn()
        except Exception as exc:
            log(f"{name} FAILED:\n{traceback.format_exc()}")
            self.errors.append(f"{name} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            return None
        log(f"{name} done in {time.monotonic() - started:.1f}s")
        return result


@dataclass
class City:
    """What every database's measurement shares: the generated city and the run's plan."""

    path: Path  # the generated SQLite city (never changed)
    name: str  # which of CITIES
    grids: int
    days: int
    now: datetime
    later: datetime
    tz: ZoneInfo
    changes: Path  # bench/changes.py's plan, JSON
    work: Path
    quick: bool
    scrapes: int


@dataclass
class Side:
    """One database's measurements; None where a step failed."""

    label: str
    floor: tuple[dict[floor.Key, float], float, float] | None = None  # values, wall, database CPU
    floor_rows: int | None = None  # rows the floor's (and query-exporter's) queries visit
    ip: dict[str, Any] | None = None
    agree: tuple[int, int, list[str]] | None = None
    dm: dict[str, Any] | None = None
    q: dict[str, Any] | None = None
    qe_agree: tuple[int, int, list[str]] | None = None
    restarts: dict[str, tuple[int, int, list[str]]] = field(default_factory=dict)
    facts: list[tuple[str, str]] = field(default_factory=list)


def in_process(config: Path, target: str, city: City, server_pid: int | None = None) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.inproc", "--config", str(config), "--target", target]
    argv += ["--changes", str(city.changes), "--now", city.now.isoformat(), "--later", city.later.isoformat()]
    if server_pid is not None:
        argv += ["--server-pid", str(server_pid)]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the in-process runs failed:\n{proc.stderr[-4000:]}")
    out: dict[str, Any] = json.loads(proc.stdout)
    failed = [
        f"{phase} {name}: {c['outcome']}: {c['error']}"
        for phase in ("full", "steady")
        for name, c in out[phase]["checks"].items()
        if c["outcome"] != "success"
    ]
    if failed:
        raise RuntimeError("checks failed: " + "; ".join(failed))
    return out


def _common(
    side: Side,
    steps: Steps,
    city: City,
    run_dir: Path,
    source: str,
    target: str,
    peer: Callable[[], dict[str, Any]],
    server_pid: int | None = None,
) -> None:
    """The steps both databases take once the city is in place and the floor has run."""
    label = side.label
    timeout = "6h"
    inproc_config = gridwatch_config(run_dir / "gridwatch.toml", source, "inproc-state.db", timeout)
    side.ip = steps.run(
        f"{label}: in-process full and steady runs", lambda: in_process(inproc_config, target, city, server_pid)
    )
    if side.floor is not None and side.ip is not None:
        side.agree = floor.compare(side.floor[0], side.ip["samples_full"])
        for line in side.agree[2]:
            log(f"{label}: floor vs full run: {line}")

    port = free_port()
    daemon_config = gridwatch_config(run_dir / "daemon.toml", source, "daemon-state.db", timeout)
    daemon_config.write_text(with_listen(daemon_config.read_text(encoding="utf-8"), port), encoding="utf-8")
    settle = 0.0 if city.quick else 61.0  # the lag gauge keeps a minute: let start-up leave it
    side.dm = steps.run(
        f"{label}: daemon: /metrics, event-loop lag, restarts",
        lambda: daemon.measure(
            daemon_config,
            port,
            city.later.isoformat(),
            city.scrapes,
            settle,
            ready_timeout=max(300.0, 1.5 * city.grids),
        ),
    )
    if side.dm is not None:
        for name in ("sigterm", "sigkill"):
            r = side.dm[f"restart_{name}"]
            want = {(m, tuple(sorted(labels.items()))): v for m, labels, v in r["before"]}
            side.restarts[name] = floor.compare(want, r["after"], {m for m, _, _ in r["before"] + r["after"]})
            for line in side.restarts[name][2]:
                log(f"{label}: samples before vs after the restart ({name}): {line}")

    side.q = steps.run(f"{label}: query-exporter", peer)
    if side.q is not None and side.ip is not None:
        want = {(m, tuple(sorted(labels.items()))): v for m, labels, v in side.q["samples"]}
        side.qe_agree = floor.compare(want, side.ip["samples_steady"])
        for line in side.qe_agree[2]:
            log(f"{label}: query-exporter vs steady run: {line}")


def qe_interval(floor_wall: float | None) -> int:
    """Four times the floor's time plus a second: cycles never overlap."""
    return max(2, math.ceil(4 * (floor_wall or 1.0) + 1))


def measure_sqlite(city: City, steps: Steps) -> Side:
    """Every figure on a copy of the SQLite city."""
    side = Side(DATABASES["sqlite"])
    run_dir = city.work / f"run-{city.name}-g{city.grids}-d{city.days}" / "sqlite"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    db = run_dir / "city.db"
    shutil.copyfile(city.path, db)
    floor.install_calendar(db, city.tz)

    def floor_run() -> tuple[dict[floor.Key, float], float, float]:
        values, wall, cpu = floor.run(db, city.now, city.tz)
        return values, wall, cpu

    side.floor = steps.run("SQLite: plain-SQL floor", floor_run)

    def peer() -> dict[str, Any]:
        exe = qe.install(city.work)
        params = floor.params(city.later, city.tz, floor.history_start(db))
        out = qe.measure(
            exe,
            f"sqlite:///{db.resolve()}",
            floor.queries(db),
            params,
            run_dir,
            cycles=2 if city.quick else 3,
            scrapes=city.scrapes,
            interval=qe_interval(side.floor[1] if side.floor else None),
        )
        side.floor_rows = floor.rows_visited(db, city.later, city.tz)[0]
        return out

    _common(side, steps, city, run_dir, f'type = "sqlite"\npath = "{db.name}"', str(db), peer)
    return side


def measure_postgres(city: City, steps: Steps) -> Side:
    """Every figure on the city loaded into a private PostgreSQL server."""
    from bench import floorpg, pgcity

    side = Side(DATABASES["postgres"])
    run_dir = city.work / f"run-{city.name}-g{city.grids}-d{city.days}" / "postgres"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    server = steps.run("PostgreSQL: start the server", lambda: pgcity.start(city.work))
    if server is None:
        return side
    try:
        loaded = steps.run("PostgreSQL: the city", lambda: pgcity.load(server, city.path, log))
        if loaded is None:
            return side
        dbname = pgcity.fresh_copy(server, loaded)
        ticks = pgcity.server_ticks(server)
        side.facts.append(("PostgreSQL", pgcity.version(server)))
        with pgcity.connect(server, dbname) as conn:
            floorpg.install_calendar(conn, city.tz)

        def floor_run() -> tuple[dict[floor.Key, float], float, float]:
            with pgcity.connect(server, dbname) as conn:
                values, wall, server_cpu = floorpg.run(conn, city.now, city.tz, ticks)
            return values, wall, server_cpu

        side.floor = steps.run("PostgreSQL: plain-SQL floor", floor_run)

        def peer() -> dict[str, Any]:
            exe = qe.install(city.work)
            with pgcity.connect(server, dbname) as conn:
                params = floorpg.pg_params(conn, city.later, city.tz)
            out = qe.measure(
                exe,
                server.url_for(dbname),
                floorpg.QUERIES_PG,
                params,
                run_dir,
                cycles=2 if city.quick else 3,
                scrapes=city.scrapes,
                interval=qe_interval(side.floor[1] if side.floor else None),
                server_ticks=ticks,
            )
            with pgcity.connect(server, dbname) as conn:
                side.floor_rows = floorpg.rows_visited(conn, city.later, city.tz)[0]
            return out

        source = f'type = "sql"\nurl = "{server.url_for(dbname)}"'
        _common(side, steps, city, run_dir, source, server.dsn_for(dbname), peer, server.pid)
        steps.run("PostgreSQL: drop the run's copy", lambda: pgcity.drop(server, dbname))
    finally:
        server.close()
    return side


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--grids", type=int, default=2000, help="grids in the city (default 2,000; 10,000 for a city)")
    p.add_argument("--days", type=int, default=365, help="days of history (default 365)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--now", default="2026-11-20T15:00:00+08:00", help="the first run's evaluation time")
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both", help="the databases (default both)")
    p.add_argument("--quick", action="store_true", help="tiny city (20 grids, 30 days): every step, no targets")
    p.add_argument("--work", type=Path, default=ROOT / "bench" / ".work", help="cache and scratch directory")
    p.add_argument("--out", type=Path, help="results file (default: WORK/results.md)")
    p.add_argument("--scrapes", type=int, help="/metrics scrapes per server (default 20; quick 5)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is not met")
    p.add_argument(
        "--city", choices=(*CITIES, "both"), default="both", help="the demo city, the second city, or both (default)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.grids, args.days = 20, 30
    out: Path = args.out or args.work.resolve() / "results.md"
    docs, failed, unmet = [], 0, 0
    for city in CITIES if args.city == "both" else (args.city,):
        doc, ok, missed = bench_city(args, city)
        print(doc, flush=True)
        docs.append(doc)
        failed += not ok
        unmet += missed
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(docs), encoding="utf-8")
    log(f"results written to {out}")
    if failed:
        log(f"FAILED: {failed} city run(s) had a step fail or answers disagree")
        return 1
    if args.strict and not args.quick and unmet:
        log(f"FAILED: {unmet} target(s) not met")
        return 1
    return 0


def bench_city(args: argparse.Namespace, name: str) -> tuple[str, bool, int]:
    """Every step on one city, on each database: (its document, every step ran and every
    answer agreed, targets missed)."""
    tz = ZoneInfo(TZ)
    now = datetime.fromisoformat(args.now).astimezone(tz)
    work: Path = args.work.resolve()
    steps = Steps()
    n = args.grids
    load_start = os.getloadavg()[0]

    # the city, and the changes the steady run sees, planned once for every database
    source = dataset(work, n, args.days, args.seed, now, name)
    plan = work / f"changes-{name}-g{n}-d{args.days}.json"
    city = City(
        source,
        name,
        n,
        args.days,
        now,
        now + STEADY_AFTER,
        tz,
        plan,
        work,
        args.quick,
        args.scrapes or (5 if args.quick else 20),
    )
    plan.write_text(json.dumps(changes.plan(source, city.now, city.later, tz, seed=args.seed)), encoding="utf-8")
    with floor.connect(source) as conn:
        sizes = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    conn.close()

    chosen = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    measure = {"sqlite": measure_sqlite, "postgres": measure_postgres}
    sides = [measure[db](city, steps) for db in chosen]

    rows, notes = build_rows(n, sides)
    notes += steps.errors
    title = f"gridwatch {__version__}, {CITIES[name]}, {n:,} grids x {args.days} days" + (
        " (quick mode: tiny city)" if args.quick else ""
    )
    command = "make bench QUICK=1" if args.quick else f"make bench GRIDS={n}" if n != 2000 else "make bench"
    facts = [
        (
            "Command",
            command + "".join(f" (--{o} {v})" for o, v in (("city", args.city), ("db", args.db)) if v != "both"),
        ),
        ("Dataset", ", ".join(f"{t} {sizes[t]:,}" for t in TABLES) + f"; first run as of {now.isoformat()}"),
        *report.machine([f for s in sides for f in s.facts]),
        ("Load average (1 min)", f"{load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"),
    ]
    q = next((s.q for s in sides if s.q is not None), None)
    if q is not None:
        intervals = ", ".join(f"{s.label} {s.q['interval']} s" for s in sides if s.q is not None)
        facts.append(("query-exporter", f"{q['version']}, interval {intervals}, {q['cycles']:g} cycles watched"))
    doc = report.document(title, facts, rows, [s.label for s in sides], notes)
    compared = [a for s in sides for a in (s.agree, s.qe_agree, *s.restarts.values())]
    disagree = [a for a in compared if a is None or a[1] > 0]
    if steps.errors or disagree:
        log(f"{name}: {len(steps.errors)} step(s) failed, {len(disagree)} comparison(s) missing or disagreeing")
    return doc, not steps.errors and not disagree, sum(NO in r.met for r in rows)


def build_rows(n: int, sides: list[Side]) -> tuple[list[Row], list[str]]:
    """The table: a value per database in each row; why each missed target was missed."""
    rows: list[Row] = []
    notes: list[str] = []

    def row(
        figure: str, value: Callable[[Side], str], target: str = NONE, ok: Callable[[Side], bool | None] | None = None
    ) -> None:
        verdicts = {s.label: verdict(ok(s)) for s in sides} if ok else {}
        rows.append(Row(figure, [value(s) for s in sides], target, report.met(verdicts) if ok else NONE))

    def full(s: Side) -> dict[str, Any] | None:
        return s.ip["full"] if s.ip else None

    def steady(s: Side) -> dict[str, Any] | None:
        return s.ip["steady"] if s.ip else None

    def wall_cpu(x: dict[str, Any] | None) -> str:
        return NA if x is None else f"{seconds(x['wall'])} / {seconds(x['cpu'])}"

    def server(x: dict[str, Any] | None) -> str:
        if x is None:
            return NA
        return "— (in the process)" if x.get("server_cpu") is None else seconds(x["server_cpu"])

    for c in CHECKS:
        row(f"Full run: {c} (wall / CPU)", lambda s, c=c: wall_cpu(full(s)["checks"].get(c) if full(s) else None))
    row("Full run: all four checks (wall / CPU)", lambda s: wall_cpu(full(s)))
    row("Full run: database server CPU", lambda s: server(full(s)))
    row(
        "Plain-SQL floor, same figures (wall / database CPU)",
        lambda s: NA if s.floor is None else f"{seconds(s.floor[1])} / {seconds(s.floor[2])}",
    )

    def full_ratio(s: Side) -> float | None:
        f = full(s)
        return f["wall"] / s.floor[1] if f and s.floor and s.floor[1] else None

    row("Full run ÷ floor (wall)", lambda s: ratio(full_ratio(s)), "≤ 1.5×", lambda s: _le(full_ratio(s), 1.5))
    row(
        "Floor and full run agree (series / mismatches)",
        lambda s: _agree(s.agree),
        "0 mismatches",
        lambda s: _agreed(s.agree),
    )
    row("Rows read, full run", lambda s: _rows(full(s)))

    def changed(s: Side) -> int | None:
        return sum(s.ip["changed"].values()) if s.ip else None

    def changed_cell(s: Side) -> str:
        if not s.ip:
            return NA
        parts = ", ".join(f"{k} {v:,}" for k, v in s.ip["changed"].items())
        return f"{changed(s):,} ({parts})"

    row("Rows changed: inserted + updated (0.1 %)", changed_cell)
    for c in CHECKS:
        row(f"Steady run: {c} (wall / CPU)", lambda s, c=c: wall_cpu(steady(s)["checks"].get(c) if steady(s) else None))
    row("Steady run: all four checks (wall / CPU)", lambda s: wall_cpu(steady(s)))
    row("Steady run: database server CPU", lambda s: server(steady(s)))

    def steady_ratio(s: Side) -> float | None:
        f, st = full(s), steady(s)
        return st["wall"] / f["wall"] if f and st and f["wall"] else None

    row(
        "Steady run ÷ full run (wall)",
        lambda s: percent(steady_ratio(s)),
        "≤ 5 %",
        lambda s: _le(steady_ratio(s), 0.05),
    )

    def read_ok(s: Side) -> bool | None:
        st, ch = steady(s), changed(s)
        return None if st is None or st["rows_read"] is None or ch is None else st["rows_read"] <= 2 * ch

    row("Rows read, steady run", lambda s: _rows(steady(s)), "≤ 2 × rows changed", read_ok)

    target = metrics_target(n)
    row(
        "/metrics response (p50 / max)",
        lambda s: NA if s.dm is None else f"{seconds(s.dm['scrape_p50'])} / {seconds(s.dm['scrape_max'])}",
        f"max < {seconds(target)} at {n:,} grids",
        lambda s: None if s.dm is None else s.dm["scrape_max"] < target,
    )
    row("/metrics size", lambda s: NA if s.dm is None else f"{size(s.dm['bytes'])}, {s.dm['series']:,} series")
    row(
        "Event-loop lag during scrapes (gridwatch_event_loop_lag_seconds)",
        lambda s: seconds(s.dm["lag_gauge"] if s.dm else None),
        "< 100 ms",
        lambda s: None if s.dm is None or s.dm["lag_gauge"] is None else s.dm["lag_gauge"] < 0.1,
    )
    row(
        "/healthz answer during scrapes (p50 / max)",
        lambda s: NA if s.dm is None else f"{seconds(s.dm['healthz_p50'])} / {seconds(s.dm['healthz_max'])}",
        "max < 100 ms",
        lambda s: None if s.dm is None or s.dm["healthz_max"] is None else s.dm["healthz_max"] < 0.1,
    )
    row(
        "Peak RSS, in-process full run",
        lambda s: megabytes(s.ip["vmhwm_full_kb"] if s.ip else None),
        "< 300 MB at 10,000 grids",
        lambda s: _rss_ok(s.ip["vmhwm_full_kb"] if s.ip else None, n),
    )
    row(
        "Peak RSS, daemon",
        lambda s: megabytes(s.dm["vmhwm_kb"] if s.dm else None),
        "< 300 MB at 10,000 grids",
        lambda s: _rss_ok(s.dm["vmhwm_kb"] if s.dm else None, n),
    )
    limit = restart_target(n)
    for name, sig in (("sigterm", "SIGTERM"), ("sigkill", "SIGKILL")):
        row(
            f"Restart to /readyz after {sig}",
            lambda s, name=name: seconds(s.dm[f"restart_{name}"]["seconds"] if s.dm else None),
            f"≤ {seconds(limit)} at {n:,} grids",
            lambda s, name=name: _le(s.dm[f"restart_{name}"]["seconds"] if s.dm else None, limit),
        )
        row(
            f"Samples before and after the {sig} restart agree (series / mismatches)",
            lambda s, name=name: _agree(s.restarts.get(name)),
            "0 mismatches",
            lambda s, name=name: _agreed(s.restarts.get(name)),
        )

    def cpu_cycle(s: Side) -> tuple[float, float] | None:
        st = steady(s)
        if st is None or s.q is None or not s.q["cpu_per_cycle"]:
            return None
        ours = st["cpu"] + (st.get("server_cpu") or 0.0)
        theirs = s.q["cpu_per_cycle"] + (s.q.get("server_cpu_per_cycle") or 0.0)
        return ours, theirs

    def cpu_cell(s: Side) -> str:
        """``ours / theirs = ratio``, each ``client + server`` where there is a server."""
        c, st = cpu_cycle(s), steady(s)
        if c is None or not c[1] or st is None or s.q is None:
            return NA
        if st.get("server_cpu") is None:
            return f"{seconds(c[0])} / {seconds(c[1])} = {ratio(c[0] / c[1])}"
        ours = f"{seconds(st['cpu'])} + {seconds(st['server_cpu'])}"
        theirs = f"{seconds(s.q['cpu_per_cycle'])} + {seconds(s.q['server_cpu_per_cycle'])}"
        return f"({ours}) / ({theirs}) = {ratio(c[0] / c[1])}"

    row(
        "CPU per cycle, with the database server's: gridwatch steady run / query-exporter",
        cpu_cell,
        "≤ 0.2×",
        lambda s: None if (c := cpu_cycle(s)) is None or not c[1] else c[0] / c[1] <= 0.2,
    )

    def read(s: Side) -> int | None:
        st = steady(s)
        return st["rows_read"] if st else None

    def read_per_cycle(s: Side) -> float | None:
        n = read(s)
        return n / s.floor_rows if n is not None and s.floor_rows else None

    row(
        "Rows read per cycle: gridwatch steady run / query-exporter",
        lambda s: f"{count(read(s))} / {count(s.floor_rows)} = {ratio(read_per_cycle(s))}",
        "≤ 0.2×",
        lambda s: _le(read_per_cycle(s), 0.2),
    )
    row(
        "/metrics scrape p50: gridwatch / query-exporter",
        lambda s: (
            NA
            if s.dm is None or s.q is None
            else f"{seconds(s.dm['scrape_p50'])} / {seconds(s.q['scrape_p50'])} = "
            f"{ratio(s.dm['scrape_p50'] / s.q['scrape_p50'])}"
        ),
    )
    row(
        "query-exporter and steady run agree (series / mismatches)",
        lambda s: _agree(s.qe_agree),
        "0 mismatches",
        lambda s: _agreed(s.qe_agree),
    )

    notes += missed(n, sides, full_ratio, steady_ratio, read_ok, cpu_cycle)
    if n < 10000:
        notes.append(
            "Peak RSS: the target is for 10,000 grids (`make bench GRIDS=10000`); a smaller city can only fail it."
        )
    notes.append(
        "Rows read: rows the database visits to answer. For query-exporter (and the floor) they come from the "
        "queries' plans: on SQLite `EXPLAIN QUERY PLAN` (a SCAN visits every row of its table, a SEARCH the rows "
        "it returns), on PostgreSQL `EXPLAIN ANALYZE` (the rows each scan returned or filtered out, over its "
        "loops). For gridwatch they are the rows its sources read (`source.rows_read`; rows SQLite folds into a "
        "line per key count one each)."
    )
    notes.append(
        "Database server CPU: PostgreSQL's processes (the postmaster, its backends and workers, from /proc) over "
        "the same window as the client's CPU; SQLite runs inside the process, so its work is in the process's CPU."
    )
    return rows, notes


def missed(
    n: int,
    sides: list[Side],
    full_ratio: Callable[[Side], float | None],
    steady_ratio: Callable[[Side], float | None],
    read_ok: Callable[[Side], bool | None],
    cpu_cycle: Callable[[Side], tuple[float, float] | None],
) -> list[str]:
    """For each missed target on each database: what the measurements say it was missed by,
    and what would meet it."""
    out: list[str] = []
    for s in sides:
        ip = s.ip
        if ip is None:
            continue
        full, steady = ip["full"], ip["steady"]
        slowest = max(full["checks"].items(), key=lambda kv: kv[1]["wall"], default=None)
        r = full_ratio(s)
        if r is not None and r > 1.5:
            read = full["rows_read"]
            why = f"{s.label}, full run {ratio(r)} the floor: "
            if slowest is not None:
                why += f"the {slowest[0]} check took {seconds(slowest[1]['wall'])} of {seconds(full['wall'])}; "
            if read is not None and s.floor_rows:
                why += (
                    f"gridwatch read {read:,} rows into the process where the floor's queries visit {s.floor_rows:,} "
                )
                why += "and hand back only the answers. "
            why += (
                "What would meet it: aggregate in the database on full reads (the per-household latest visit, "
                "the per-grid last patrol, the first report per grid, kind and period, the case counts), as the "
                "floor does, with the rows the database cannot vouch for counted in the same pass."
            )
            out.append(why)
        r = steady_ratio(s)
        if (r is not None and r > 0.05) or read_ok(s) is False:
            why = f"{s.label}, steady run {percent(r)} of the full run"
            if steady["rows_read"] is not None:
                why += f", {steady['rows_read']:,} rows read for {sum(ip['changed'].values()):,} changed"
            again = {t: v for t, v in (steady.get("rows_read_by_table") or {}).items()
                     if v >= 0.5 * (full.get("rows_read_by_table") or {}).get(t, math.inf)}  # fmt: skip
            if again:
                why += f": read in full again: {', '.join(sorted(again))}"
            why += (
                ". What would meet it: follow appends and edits per table (an increasing id or an "
                "`updated_at`-style cursor column), reading only what changed since the last run."
            )
            out.append(why)
        c = cpu_cycle(s)
        if c is not None and c[1] and c[0] / c[1] > 0.2:
            st_server = steady.get("server_cpu")
            why = f"{s.label}, CPU per cycle {ratio(c[0] / c[1])} query-exporter's: gridwatch {seconds(steady['cpu'])}"
            why += "" if st_server is None else f" and the server {seconds(st_server)}"
            why += f", against {seconds(s.q['cpu_per_cycle'])}" if s.q else ""
            why += (
                ""
                if not s.q or s.q.get("server_cpu_per_cycle") is None
                else f" and {seconds(s.q['server_cpu_per_cycle'])}"
            )
            why += (
                ". What would meet it: read only what changed (cursor columns, a changed-since column for the "
                "cases) and hand on only the samples that changed."
            )
            out.append(why)
        limit = restart_target(n)
        slow = [k for k in ("sigterm", "sigkill") if s.dm and s.dm[f"restart_{k}"]["seconds"] > limit]
        if slow:
            times = ", ".join(f"{k.upper()} {seconds(s.dm[f'restart_{k}']['seconds'])}" for k in slow)
            out.append(
                f"{s.label}, restart to /readyz ({times}; the full run takes {seconds(full['wall'])}): a restart "
                "starts with a full read, since what the checks keep between runs lives in the process, and the "
                "scheduler spreads the first runs over up to 5 s. What would meet it: keep that state in the "
                "state database and resume from the cursors, and run the first checks at once after a restart."
            )
        big = [kb for kb in (ip["vmhwm_full_kb"], s.dm["vmhwm_kb"] if s.dm else None) if kb is not None]
        if big and max(big) >= RSS_TARGET_KB:
            out.append(
                f"{s.label}, peak RSS {megabytes(max(big))}: the per-household state (grid, category, last "
                "visit) is Python objects. What would meet it: keep it in a table of the state database, with "
                "only per-grid counters in memory."
            )
    return out


def _le(x: float | None, limit: float) -> bool | None:
    return None if x is None else x <= limit


def _rows(phase: dict[str, Any] | None) -> str:
    if phase is None or phase["rows_read"] is None:
        return NA
    by = phase.get("rows_read_by_table") or {}
    detail = ", ".join(f"{t} {v:,}" for t, v in sorted(by.items()))
    return f"{phase['rows_read']:,}" + (f" ({detail})" if detail else "")


def _agree(a: tuple[int, int, list[str]] | None) -> str:
    return NA if a is None else f"{a[0]:,} / {a[1]:,}"


def _agreed(a: tuple[int, int, list[str]] | None) -> bool | None:
    return None if a is None else a[1] == 0


def _rss_ok(kb: int | None, grids: int) -> bool | None:
    if kb is None:
        return None
    if grids >= 10000 or kb >= RSS_TARGET_KB:
        return kb < RSS_TARGET_KB
    return None


if __name__ == "__main__":
    sys.exit(main())
