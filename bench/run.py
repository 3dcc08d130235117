"""``make bench``: how much work gridwatch does for the four domain checks, against targets.

One run generates (or reuses) a demo city, measures the first full run of the checks against
the same figures in plain SQL, changes 0.1 % of the rows and measures the next run on the same
runtime, scrapes a real daemon, and runs query-exporter on the same queries. It prints one
table (Markdown) and writes it to ``--out``. ``--quick`` does the same on a tiny city for CI:
every step must work and every answer agree, but no figure is held to its target.

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
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

if __package__ in (None, ""):  # run as a script (python bench/run.py): make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import daemon, floor, qe, report, second
from bench.report import NA, NO, NONE, Row, count, megabytes, percent, ratio, seconds, size, verdict
from gridwatch import __version__, schema
from gridwatch.testing import free_port, with_listen
from gridwatch.tools import demo

ROOT = Path(__file__).resolve().parent.parent
TZ = "Asia/Shanghai"
CHECKS = ("visits", "patrols", "incidents", "reports")
TABLES = ("grids", "households", "visits", "patrols", "incidents", "reports")
STEADY_AFTER = timedelta(minutes=5)
RSS_TARGET_KB = 300 * 1024  # at 10,000 grids
T = TypeVar("T")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def metrics_target(grids: int) -> float:
    """/metrics must answer in 250 ms at 2,000 grids and 1 s at 10,000 (linear in between)."""
    return 0.25 + 0.75 * min(1.0, max(0.0, (grids - 2000) / 8000))


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


def gridwatch_config(path: Path, db: Path, state: str, timeout: str) -> Path:
    """The four domain checks on the city. Intervals are long: the bench decides when they run
    in-process, and in the daemon nothing should run beside the scrapes."""
    checks = "".join(
        f'\n[[checks]]\nname = "{c}"\ntype = "{c}"\nsource = "city"\ninterval = "6h"\ntimeout = "{timeout}"\n'
        for c in CHECKS
    )
    path.write_text(
        f'timezone = "{TZ}"\n\n[state]\npath = "{state}"\n\n[grids]\nsource = "city"\n\n'
        f'[sources.city]\ntype = "sqlite"\npath = "{db.name}"\n{checks}',
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


def in_process(config: Path, db: Path, now: datetime, later: datetime, seed: int) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.inproc", "--config", str(config), "--db", str(db)]
    argv += ["--now", now.isoformat(), "--later", later.isoformat(), "--seed", str(seed)]
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--grids", type=int, default=2000, help="grids in the city (default 2,000; 10,000 for a city)")
    p.add_argument("--days", type=int, default=365, help="days of history (default 365)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--now", default="2026-11-20T15:00:00+08:00", help="the first run's evaluation time")
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


def bench_city(args: argparse.Namespace, city: str) -> tuple[str, bool, int]:
    """Every step on one city: (its document, every step ran and every answer agreed, targets missed)."""
    scrapes = args.scrapes or (5 if args.quick else 20)
    tz = ZoneInfo(TZ)
    now = datetime.fromisoformat(args.now).astimezone(tz)
    later = now + STEADY_AFTER
    work: Path = args.work.resolve()
    steps = Steps()
    n = args.grids
    load_start = os.getloadavg()[0]

    # 1. the city: cached, copied (the runs change it), with the floor's calendar table
    source = dataset(work, n, args.days, args.seed, now, city)
    run_dir = work / f"run-{city}-g{n}-d{args.days}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    db = run_dir / "city.db"
    shutil.copyfile(source, db)
    with sqlite3.connect(db) as conn:
        sizes = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    conn.close()
    floor.install_calendar(db, tz)
    timeout = "6h"
    inproc_config = gridwatch_config(run_dir / "gridwatch.toml", db, "inproc-state.db", timeout)

    # 2. the floor, then the full and (3.) the steady run in-process
    fl = steps.run("plain-SQL floor", lambda: floor.run(db, now, tz))
    ip = steps.run("in-process full and steady runs", lambda: in_process(inproc_config, db, now, later, args.seed))
    agree = None
    if fl is not None and ip is not None:
        agree = floor.compare(fl[0], ip["samples_full"])
        for line in agree[2]:
            log(f"floor vs full run: {line}")

    # 4./5. the daemon
    port = free_port()
    daemon_config = run_dir / "daemon.toml"
    gridwatch_config(daemon_config, db, "daemon-state.db", timeout)
    daemon_config.write_text(with_listen(daemon_config.read_text(encoding="utf-8"), port), encoding="utf-8")
    settle = 0.0 if args.quick else 61.0  # the lag gauge keeps a minute: let start-up leave it
    dm = steps.run(
        "daemon: /metrics and event-loop lag",
        lambda: daemon.measure(daemon_config, port, scrapes, settle, ready_timeout=max(300.0, 0.6 * n)),
    )

    # 6. query-exporter on the changed city, as of the steady run's time
    def peer() -> dict[str, Any]:
        exe = qe.install(work)
        interval = max(2, math.ceil(4 * (fl[1] if fl else 1.0) + 1))
        return qe.measure(
            exe, db, later, tz, run_dir, cycles=2 if args.quick else 3, scrapes=scrapes, interval=interval
        )

    q = steps.run("query-exporter", peer)
    qe_agree = None
    if q is not None and ip is not None:
        want = {(m, tuple(sorted(labels.items()))): v for m, labels, v in q["samples"]}
        qe_agree = floor.compare(want, ip["samples_steady"])
        for line in qe_agree[2]:
            log(f"query-exporter vs steady run: {line}")

    rows, notes = build_rows(n, fl, ip, agree, dm, q, qe_agree)
    for e in steps.errors:
        notes.append(e)
    title = f"gridwatch {__version__}, {CITIES[city]}, {n:,} grids x {args.days} days" + (
        " (quick mode: tiny city)" if args.quick else ""
    )
    command = "make bench QUICK=1" if args.quick else f"make bench GRIDS={n}" if n != 2000 else "make bench"
    facts = [
        ("Command", command + ("" if args.city == "both" else f" (--city {city})")),
        ("Dataset", ", ".join(f"{t} {sizes[t]:,}" for t in TABLES) + f"; first run as of {now.isoformat()}"),
        *report.machine(),
        ("Load average (1 min)", f"{load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"),
    ]
    if q is not None:
        facts.append(("query-exporter", f"{q['version']}, interval {q['interval']} s, {q['cycles']:g} cycles watched"))
    doc = report.document(title, facts, rows, notes)
    disagree = [a for a in (agree, qe_agree) if a is None or a[1] > 0]
    return doc, not steps.errors and not disagree, sum(r.met == NO for r in rows)


def build_rows(
    n: int,
    fl: tuple[Any, float, float] | None,
    ip: dict[str, Any] | None,
    agree: tuple[int, int, list[str]] | None,
    dm: dict[str, Any] | None,
    q: dict[str, Any] | None,
    qe_agree: tuple[int, int, list[str]] | None,
) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    full = ip["full"] if ip else None
    steady = ip["steady"] if ip else None

    def wall_cpu(x: dict[str, Any] | None) -> str:
        return NA if x is None else f"{seconds(x['wall'])} / {seconds(x['cpu'])}"

    for c in CHECKS:
        rows.append(Row(f"Full run: {c} (wall / CPU)", wall_cpu(full["checks"].get(c) if full else None)))
    rows.append(Row("Full run: all four checks (wall / CPU)", wall_cpu(full)))
    rows.append(
        Row("Plain-SQL floor, same figures (wall / CPU)", NA if fl is None else f"{seconds(fl[1])} / {seconds(fl[2])}")
    )
    r = full["wall"] / fl[1] if full and fl else None
    rows.append(Row("Full run ÷ floor (wall)", ratio(r), "≤ 1.5×", verdict(None if r is None else r <= 1.5)))
    rows.append(Row("Floor and full run agree (series / mismatches)", _agree(agree), "0 mismatches", _agree_ok(agree)))
    rows.append(Row("Rows read, full run", _rows(full)))

    changed = sum(ip["changed"].values()) if ip else None
    if ip:
        parts = ", ".join(f"{k} {v:,}" for k, v in ip["changed"].items())
        rows.append(Row("Rows changed: inserted + updated (0.1 %)", f"{changed:,} ({parts})"))
    else:
        rows.append(Row("Rows changed: inserted + updated (0.1 %)", NA))
    for c in CHECKS:
        rows.append(Row(f"Steady run: {c} (wall / CPU)", wall_cpu(steady["checks"].get(c) if steady else None)))
    rows.append(Row("Steady run: all four checks (wall / CPU)", wall_cpu(steady)))
    r = steady["wall"] / full["wall"] if steady and full else None
    rows.append(Row("Steady run ÷ full run (wall)", percent(r), "≤ 5 %", verdict(None if r is None else r <= 0.05)))
    read = steady["rows_read"] if steady else None
    limit = 2 * changed if changed is not None else None
    rows.append(
        Row(
            "Rows read, steady run",
            _rows(steady),
            f"≤ 2 × changed = {limit:,}" if limit is not None else "≤ 2 × changed",
            verdict(None if read is None or limit is None else read <= limit),
        )
    )
    if ip and read is None:
        notes.append("Rows read: n/a until the sources count what they return (`source.rows_read`).")

    target = metrics_target(n)
    scrape = dm["scrape_max"] if dm else None
    rows.append(
        Row(
            "/metrics response (p50 / max)",
            NA if dm is None else f"{seconds(dm['scrape_p50'])} / {seconds(dm['scrape_max'])}",
            f"max < {seconds(target)} at {n:,} grids",
            verdict(None if scrape is None else scrape < target),
        )
    )
    rows.append(Row("/metrics size", NA if dm is None else f"{size(dm['bytes'])}, {dm['series']:,} series"))
    lag = dm["lag_gauge"] if dm else None
    rows.append(
        Row(
            "Event-loop lag during scrapes (gridwatch_event_loop_lag_seconds)",
            seconds(lag),
            "< 100 ms",
            verdict(None if lag is None else lag < 0.1),
        )
    )
    hz = dm["healthz_max"] if dm else None
    rows.append(
        Row(
            "/healthz answer during scrapes (p50 / max)",
            NA if dm is None else f"{seconds(dm['healthz_p50'])} / {seconds(hz)}",
            "max < 100 ms",
            verdict(None if hz is None else hz < 0.1),
        )
    )
    for what, kb in (
        ("Peak RSS, in-process full run", ip["vmhwm_full_kb"] if ip else None),
        ("Peak RSS, daemon", dm["vmhwm_kb"] if dm else None),
    ):
        rows.append(Row(what, megabytes(kb), "< 300 MB at 10,000 grids", _rss_met(kb, n)))
    if n < 10000:
        notes.append(
            "Peak RSS: the target is for 10,000 grids (`make bench GRIDS=10000`); a smaller city can only fail it."
        )

    gw_cpu = steady["cpu"] if steady else None
    qe_cpu = q["cpu_per_cycle"] if q else None
    r = gw_cpu / qe_cpu if gw_cpu is not None and qe_cpu else None
    rows.append(
        Row(
            "CPU per cycle: gridwatch steady run / query-exporter",
            f"{seconds(gw_cpu)} / {seconds(qe_cpu)} = {ratio(r)}",
            "≤ 0.2×",
            verdict(None if r is None else r <= 0.2),
        )
    )
    qe_rows = q["rows_per_cycle"] if q else None
    r = read / qe_rows if read is not None and qe_rows else None
    rows.append(
        Row(
            "Rows read per cycle: gridwatch steady run / query-exporter",
            f"{count(read)} / {count(qe_rows)} = {ratio(r)}",
            "≤ 0.2×",
            verdict(None if r is None else r <= 0.2),
        )
    )
    r = dm["scrape_p50"] / q["scrape_p50"] if dm and q else None
    rows.append(
        Row(
            "/metrics scrape p50: gridwatch / query-exporter",
            NA if r is None else f"{seconds(dm['scrape_p50'])} / {seconds(q['scrape_p50'])} = {ratio(r)}",
            NONE,
            NONE,
        )
    )
    rows.append(
        Row(
            "query-exporter and steady run agree (series / mismatches)",
            _agree(qe_agree),
            "0 mismatches",
            _agree_ok(qe_agree),
        )
    )
    notes.append(
        "Rows read: rows the database visits to answer. For query-exporter (and the floor) they come from "
        "`EXPLAIN QUERY PLAN`: a SCAN visits every row of its table, a SEARCH the rows it returns. For gridwatch "
        "they are the rows its sources read (`source.rows_read`; rows SQLite folds into a line per key count "
        "one each); its steady reads are rowid ranges and lookups."
    )
    return rows, notes


def _rows(phase: dict[str, Any] | None) -> str:
    if phase is None or phase["rows_read"] is None:
        return NA
    by = phase.get("rows_read_by_table") or {}
    detail = ", ".join(f"{t} {v:,}" for t, v in sorted(by.items()))
    return f"{phase['rows_read']:,}" + (f" ({detail})" if detail else "")


def _agree(a: tuple[int, int, list[str]] | None) -> str:
    return NA if a is None else f"{a[0]:,} / {a[1]:,}"


def _agree_ok(a: tuple[int, int, list[str]] | None) -> str:
    return verdict(None if a is None else a[1] == 0)


def _rss_met(kb: int | None, grids: int) -> str:
    if kb is None:
        return NA
    if grids >= 10000 or kb >= RSS_TARGET_KB:
        return verdict(kb < RSS_TARGET_KB)
    return NA


if __name__ == "__main__":
    sys.exit(main())
