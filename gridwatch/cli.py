"""The ``gridwatch`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gridwatch import __version__, config
from gridwatch.api import PLUGIN_API_VERSION
from gridwatch.config import ConfigErrors, Settings
from gridwatch.plugins import PluginError, PluginHost
from gridwatch.process import logs
from gridwatch.store import StoreError

EXIT_CONFIG = 2
EXIT_STATE = 1  # the state database cannot be used: in use by another gridwatch, missing, too new


# Options a person may put before or after the command (``gridwatch -c FILE once`` and
# ``gridwatch once -c FILE``): dest → (flags, argparse keywords, default). Each parser adds them
# with no default of its own, so a later parser never overwrites what an earlier one read.
_GLOBAL: dict[str, tuple[tuple[str, ...], dict[str, Any], Any]] = {
    "config": (
        ("-c", "--config"),
        {"metavar": "FILE", "help": "config file (default: $GRIDWATCH_CONFIG or ./gridwatch.toml)"},
        None,
    ),
    "json": (("--json",), {"action": "store_true", "help": "print JSON"}, False),
    "now": (("--now",), {"metavar": "ISO8601", "help": "as of this time (default: now)"}, None),
    "log_format": (("--log-format",), {"choices": ["text", "json"], "help": "log lines (default: text)"}, "text"),
    "log_level": (
        ("--log-level",),
        {"choices": ["debug", "info", "warning", "error"], "help": "least severity logged (default: info)"},
        "info",
    ),
}
_LOGGING = ("log_format", "log_level")


class _Parser(argparse.ArgumentParser):
    """Records which global options each command takes, to refuse one given where it does not apply."""

    takes: dict[str, set[str]]


def _global(p: argparse.ArgumentParser, *dests: str, help: str | None = None) -> None:
    for dest in dests:
        flags, kwargs, _ = _GLOBAL[dest]
        p.add_argument(*flags, dest=dest, default=argparse.SUPPRESS, **(kwargs | ({"help": help} if help else {})))


def _parser() -> _Parser:
    p = _Parser(
        prog="gridwatch",
        description="Monitoring daemon for community grid management. "
        "-c, --json, --now and the log options may stand before or after the command.",
    )
    p.add_argument("--version", action="version", version=f"gridwatch {__version__}")
    _global(p, *_GLOBAL)
    p.takes = {}
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, *dests: str, **kwargs: Any) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, **kwargs)
        _global(sp, *dests, *_LOGGING)
        p.takes[name] = {*dests, *_LOGGING}
        return sp

    command("run", "config", help="run the daemon")
    check_config = command("check-config", "config", help="validate a config; exit 2 on problems")
    check_config.add_argument(
        "--connect",
        action="store_true",
        help="also open every source and look up the tables and columns the checks read",
    )
    once = command("once", "config", help="run checks once, print samples and alerts")
    _global(once, "json", help="print one JSON object")
    _global(once, "now", help="evaluation time, ISO 8601 (default: now)")
    p.takes["once"] |= {"json", "now"}
    once.add_argument("--check", action="append", help="only this check (repeatable)")
    digest = command("digest", "config", help="print a digest (通报) as of a moment, or send it")
    _global(digest, "now", help="as of this time, ISO 8601 (default: now): the latest period due then")
    p.takes["digest"].add("now")
    digest.add_argument("kind", choices=["daily", "weekly", "monthly"])
    digest.add_argument(
        "--send", action="store_true", help="send it through the notifiers of the matching [[digests]] entries"
    )
    command("plugins", "config", "json", help="list plugins and the types they provide")
    alerts = command("alerts", "config", "json", help="alerts in the state database")
    alerts.add_argument("--history", type=int, metavar="N", help="also the last N transitions")
    silence = command("silence", "config", help="add, list or expire silences")
    silence_sub = silence.add_subparsers(dest="action", required=True)
    add = silence_sub.add_parser("add", help="silence alerts matching all matchers")
    add.add_argument("matchers", nargs="+", metavar="NAME=VALUE", help="label matchers (NAME=~REGEX too)")
    add.add_argument("--duration", default="2h", help="how long (default 2h)")
    add.add_argument("--author", required=True)
    add.add_argument("--comment", default="")
    listing = silence_sub.add_parser("list", help="list silences")
    expire = silence_sub.add_parser("expire", help="end a silence now")
    expire.add_argument("id")
    for action in (add, listing, expire):
        _global(action, "config", *_LOGGING)
    new_plugin = command(
        "new-plugin",
        help="write a pip-installable check plugin package to start from",
        description="Write the package gridwatch-NAME (module gridwatch_NAME): a check type with typed "
        "options and a default rule, its tests written with the gridwatch test kit, and a README.",
    )
    new_plugin.add_argument("name", metavar="NAME", help="the check type's name, e.g. elderly_calls")
    new_plugin.add_argument("--dir", help="where to write the package (default: ./gridwatch-NAME)")
    demo = command("demo", help="write the synthetic demo city into SQLite")
    _global(demo, "now", help="generate history up to this time, ISO 8601 (default: now)")
    p.takes["demo"].add("now")
    demo.add_argument("--db", default="var/demo.db", help="output file (default: var/demo.db)")
    demo.add_argument("--grids", type=int, default=60)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--days", type=int, default=90)
    demo.add_argument(
        "--force",
        action="store_true",
        help="replace the file even if it is not a demo city (by default only a demo city is overwritten)",
    )
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, global options read wherever they stand; one given to a command that
    does not take it is a usage error (exit 2), not silently ignored."""
    parser = _parser()
    args = parser.parse_args(argv)
    for dest, (flags, _, default) in _GLOBAL.items():
        if dest not in vars(args):
            setattr(args, dest, default)
        elif dest not in parser.takes[args.command]:
            parser.error(f"{flags[-1]} does not apply to {args.command}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup(args.log_format, args.log_level)
    handler = {
        "run": cmd_run,
        "check-config": cmd_check_config,
        "once": cmd_once,
        "digest": cmd_digest,
        "plugins": cmd_plugins,
        "demo": cmd_demo,
        "alerts": cmd_alerts,
        "silence": cmd_silence,
        "new-plugin": cmd_new_plugin,
    }[args.command]
    try:
        return handler(args)
    except ConfigErrors as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return EXIT_CONFIG
    except PluginError as exc:
        print(f"gridwatch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:
        print(f"gridwatch: {exc}", file=sys.stderr)
        return EXIT_STATE


def parse_now(text: str | None, tz: Any) -> datetime:
    """``--now``: ISO 8601; without an offset it is local time in the configured timezone."""
    if not text:
        return datetime.now(UTC)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"gridwatch: --now: not an ISO 8601 time: {text!r}") from None
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt


def load_to_run(path: Path) -> tuple[Settings, PluginHost]:
    """The config as ``run`` starts from it: validated, and every source made (nothing connected),
    so a missing database driver is a config problem rather than a traceback at start."""
    from gridwatch.pipeline import connect

    settings, host = config.load(path)
    problems = connect.build_problems(settings, host, fname=str(path))
    if problems:
        raise ConfigErrors(problems)
    logs.use_timezone(settings.timezone)
    return settings, host


def cmd_run(args: argparse.Namespace) -> int:
    from gridwatch.pipeline.runtime import BuildError
    from gridwatch.process.daemon import Daemon

    path = config.config_path(args.config)
    settings, host = load_to_run(path)
    daemon = Daemon(path, settings, host)
    try:
        asyncio.run(daemon.serve())
    except OSError as exc:
        logging.getLogger("gridwatch").error("cannot start: %s", exc)
        return 1
    except BuildError as exc:  # a check a plugin cannot make from its options
        print(f"gridwatch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if threading.active_count() > 1:
        # a plugin thread stuck past its timeout must not keep the process alive after SIGTERM
        logging.shutdown()
        os._exit(0)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """Offline unless ``--connect``: then the sources are opened too, and every table and column
    a check reads is looked up (nothing is run)."""
    path = config.config_path(args.config)
    problems = list(config.problems(path))
    if not problems:
        try:
            load_to_run(path)
        except ConfigErrors as exc:
            problems = [str(e) for e in exc.errors]
    following: list[str] = []
    if not problems and args.connect:
        from gridwatch.pipeline import connect

        problems = [str(p) for p in connect.problems(*config.load(path), fname=str(path), following=following)]
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return EXIT_CONFIG
    print(f"{path}: ok")
    for line in following:
        print(line)
    return 0


def cmd_once(args: argparse.Namespace) -> int:
    from gridwatch.pipeline.runtime import BuildError
    from gridwatch.process.once import run_once

    path = config.config_path(args.config)
    settings, host = load_to_run(path)
    now = parse_now(args.now, settings.timezone)
    try:
        report = asyncio.run(run_once(settings, host, now, args.check))
    except BuildError as exc:
        print(f"gridwatch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        for s in report["samples"]:
            labels = ",".join(f'{k}="{v}"' for k, v in s["labels"].items())
            print(f"{s['check']}: {s['metric']}{{{labels}}} {s['value']:g}")
        for a in report["alerts"]:
            print(f"ALERT {a['alert']} {a['state']} {a['severity']}: {a['summary']}")
        for e in report["errors"]:
            print(f"ERROR {e['check']}: {e['error']}", file=sys.stderr)
    return 1 if report["errors"] else 0


def cmd_digest(args: argparse.Namespace) -> int:
    """Exit 0 when printed or sent, 1 when a send failed, 2 for a bad config or arguments."""
    from gridwatch.digests.replay import replay

    path = config.config_path(args.config)
    settings, host = config.load(path)
    try:
        now = parse_now(args.now, settings.timezone)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(replay(settings, host, args.kind, now, send=args.send))


def cmd_plugins(args: argparse.Namespace) -> int:
    path = config.config_path(args.config)
    dirs = config.plugin_dirs(path, config.read(path)) if path.exists() else []
    host = PluginHost.default(dirs)
    infos = [i.as_dict() for i in host.info.values()]
    if args.json:
        print(json.dumps({"api_version": PLUGIN_API_VERSION, "plugins": infos}, ensure_ascii=False, indent=2))
        return 0
    print(f"plugin API version {PLUGIN_API_VERSION}")
    for i in infos:
        where = f" ({i['location']})" if i["location"] else ""
        types = "; ".join(f"{k}: {', '.join(v)}" for k, v in i["types"].items()) or "-"
        api = i["api_version"] if i["api_version"] is not None else "undeclared"
        print(f"{i['name']}  [{i['origin']}{where}]  api: {api}  types: {types}  hooks: {', '.join(i['hooks'])}")
    return 0


def cmd_new_plugin(args: argparse.Namespace) -> int:
    from gridwatch.tools import scaffold

    try:
        written = scaffold.create(args.name, Path(args.dir) if args.dir else None)
    except scaffold.ScaffoldError as exc:
        print(f"gridwatch new-plugin: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(scaffold.next_steps(written))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from gridwatch.tools import demo

    now = parse_now(args.now, ZoneInfo("Asia/Shanghai")) if args.now else None
    db = Path(args.db)
    why = demo.not_a_demo_city(db)
    if why and not (args.force and db.is_file()):
        hint = "; --force replaces it" if db.is_file() else ""
        print(f"gridwatch demo: {db} is not a demo city ({why}): left as it is{hint}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        counts = demo.generate(db, grids=args.grids, seed=args.seed, now=now, days=args.days)
    except ValueError as exc:
        print(f"gridwatch demo: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{args.db}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
    return 0


def _state(args: argparse.Namespace) -> Any:
    """The state database of the config, opened; its times are printed in the config's zone."""
    from gridwatch.store import Store

    settings, _ = config.load(config.config_path(args.config))
    logs.use_timezone(settings.timezone)
    store = Store(settings.state_path, settings.history)
    store.open()
    return store


def cmd_alerts(args: argparse.Namespace) -> int:
    """Read alert state straight from the state database: works with the daemon down."""
    import time

    from gridwatch.alerting.engine import AlertEngine

    store = _state(args)
    try:
        engine = AlertEngine()
        store.call(engine.load)
        views = engine.views(time.time())
        history = (
            store.call(
                lambda db: list(
                    db.query(
                        "SELECT at, alert, labels, from_state, to_state, severity, value FROM alert_history "
                        "ORDER BY id DESC LIMIT ?",
                        [args.history],
                    )
                )
            )
            if args.history
            else []
        )
    finally:
        store.close()
    if args.json:
        print(
            json.dumps(
                views if not args.history else {"alerts": views, "history": history}, ensure_ascii=False, indent=2
            )
        )
        return 0
    for v in views:
        mark = " (silenced)" if v["silenced"] else ""
        labels = ",".join(f"{k}={val}" for k, val in v["labels"].items() if k != "alertname")
        since = f" since {_local(v['active_since'])}" if v.get("active_since") else ""
        print(f"{v['state']:<9}{v['severity']:<9}{v['alert']} {{{labels}}} {v['summary']}{mark}{since}")
    for h in history:
        when = logs.local_time(h["at"])
        print(f"{when} {h['alert']} {h['labels']} {h['from_state']} -> {h['to_state']} ({h['severity']})")
    return 0


def _local(iso: str) -> str:
    """An API time (UTC, ``Z``) as the CLI prints it: in the configured zone, with its offset."""
    return logs.local_time(datetime.fromisoformat(iso).timestamp())


def cmd_silence(args: argparse.Namespace) -> int:
    import time

    from gridwatch.alerting.silences import add_silence, expire_silence, load_silences, parse_matchers
    from gridwatch.durations import parse_duration

    store = _state(args)
    now = time.time()
    try:
        if args.action == "add":
            try:
                matchers = parse_matchers(args.matchers)
                seconds = parse_duration(args.duration)
                s = store.call(add_silence, matchers, now, now + seconds, args.author, args.comment, now)
            except ValueError as exc:
                print(f"gridwatch: {exc}", file=sys.stderr)
                return 2
            print(s.id)
        elif args.action == "list":
            for s in store.call(load_silences):
                v = s.view(now)
                m = ",".join(f"{x['name']}{'=~' if x['isRegex'] else '='}{x['value']}" for x in s.matchers)
                until = logs.local_time(s.ends_at)
                print(f"{s.id} {v['status']['state']:<8} {m} until {until} by {s.created_by}: {s.comment}")
        elif not store.call(expire_silence, args.id, now):
            print(f"gridwatch: no active silence {args.id}", file=sys.stderr)
            return 1
    finally:
        store.close()
    return 0
