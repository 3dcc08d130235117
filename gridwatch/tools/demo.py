"""A deterministic synthetic city for ``gridwatch demo``, written in the standard schema.

The city is shaped like the rule book: streets → communities → grids of 150–300 households,
about a tenth of them key households, with ``days`` of visits, patrols, incidents and reports
up to ``now``. Most grids are in order (green); a fixed set of grids carries one imperfection
each, so the board shows green, yellow and red lights. Which grids those are depends only on
the number of grids (never on the seed): `special_grids` lists them, so tests and demos can
rely on them.

The standard schema's optional pieces are written too, so every rule that reads them has data:
``grids.since`` (most grids in service long before the history starts, a few for ten days,
one since earlier this month: nothing of theirs is dated before it), ``patrols.role`` (the
grid worker's patrols as NULL, empty or ``worker``; supervisors every six days, grid heads now
and then) and ``household_categories`` (second registers of key households, and a few
households whose only category is there). A few periodic reports carry no ``period``, and one
grid skipped an older monthly report but sent the next one.

Everything is drawn from `random.Random` instances seeded from ``seed`` (never the global
generator), so the same ``(grids, seed, now, days)`` gives the same rows. Times are wall-clock
local time in the configured timezone, written as ``YYYY-MM-DD HH:MM:SS`` without an offset.
"""

from __future__ import annotations

import math
import os
import random
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from gridwatch.schema import STANDARD_SCHEMA

__all__ = [
    "APPLICATION_ID",
    "OPTIONAL",
    "ROLES",
    "SCHEMA",
    "generate",
    "not_a_demo_city",
    "special_grids",
]

APPLICATION_ID = int.from_bytes(b"GWdc", "big")
"""``PRAGMA application_id`` of a demo city: how ``gridwatch demo`` knows a file it may overwrite."""

#: The standard schema's optional columns and table, as the city writes them (after the
#: required columns of their table).
OPTIONAL: dict[str, tuple[str, ...]] = {
    "grids": ("since",),
    "patrols": ("role",),
    "household_categories": ("household_id", "category"),
}
SCHEMA: dict[str, tuple[str, ...]] = {  # table → column names, in order
    **{table: cols + OPTIONAL.get(table, ()) for table, cols in STANDARD_SCHEMA.items()},
    "household_categories": OPTIONAL["household_categories"],
}

_DDL = """
CREATE TABLE grids (
    grid_id TEXT PRIMARY KEY, name TEXT NOT NULL, community TEXT NOT NULL,
    street TEXT NOT NULL, zone TEXT, since TEXT
);
CREATE TABLE households (household_id TEXT PRIMARY KEY, grid_id TEXT NOT NULL, category TEXT);
CREATE TABLE household_categories (household_id TEXT NOT NULL, category TEXT NOT NULL);
CREATE TABLE visits (
    visit_id TEXT NOT NULL, household_id TEXT NOT NULL, grid_id TEXT NOT NULL,
    worker_id TEXT, visited_at TEXT NOT NULL
);
CREATE TABLE patrols (
    patrol_id TEXT NOT NULL, grid_id TEXT NOT NULL, worker_id TEXT, patrolled_at TEXT NOT NULL,
    role TEXT
);
CREATE TABLE incidents (
    incident_id TEXT PRIMARY KEY, grid_id TEXT NOT NULL, category TEXT, severity TEXT NOT NULL,
    tier TEXT NOT NULL, reported_at TEXT NOT NULL, accepted_at TEXT, dispatched_at TEXT,
    resolved_at TEXT, closed_at TEXT, reopened_count INTEGER NOT NULL DEFAULT 0,
    extended INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE reports (
    report_id TEXT PRIMARY KEY, grid_id TEXT NOT NULL, kind TEXT NOT NULL, period TEXT,
    submitted_at TEXT NOT NULL, flag TEXT
);
"""

# Built after loading: bulk inserts into unindexed tables are much faster. The unique ids are
# what a platform's primary keys give; they spare gridwatch remembering every id it has read.
_INDEXES = """
CREATE UNIQUE INDEX visits_id ON visits (visit_id);
CREATE UNIQUE INDEX patrols_id ON patrols (patrol_id);
CREATE INDEX households_grid ON households (grid_id);
CREATE INDEX household_categories_household ON household_categories (household_id);
CREATE INDEX visits_grid_time ON visits (grid_id, visited_at);
CREATE INDEX visits_household_time ON visits (household_id, visited_at);
CREATE INDEX patrols_grid_time ON patrols (grid_id, patrolled_at);
CREATE INDEX incidents_grid ON incidents (grid_id);
CREATE INDEX reports_grid_kind_period ON reports (grid_id, kind, period);
"""

#: Imperfection roles, in the order grids are dealt to them (see `special_grids`).
ROLES: dict[str, str] = {
    "major_open": "the one open major case (category major_dispute): red",
    "flagged_today": "today's daily report flagged petition: red",
    "coverage_critical": "visit coverage about 0.72-0.76, some key households overdue: red",
    "coverage_warning": "visit coverage about 0.83-0.88, some key households overdue: yellow",
    "key_overdue": "coverage above 0.90 but 1-3 key households overdue: yellow",
    "patrol_missed": "red-zone grid whose patrols stopped 2 h before now today: yellow",
    "no_patrol_yesterday": "no patrol yesterday nor today: yellow",
    "silent": "no daily report for the last 3-5 days, today included: yellow after cutoff",
    "incidents_overdue": "open cases past their deadline, one at each escalation level the grid's "
    "place in this role gives: every grid one overdue by 1-2 days (超期); the 2nd, 3rd, 5th… one "
    "by 8-13 days (二次通报, possibly at stage resolved); the 1st, 3rd, 4th… one by 15-20 days "
    "(挂牌督办: red)",
    "supervisor_overdue": "no supervisor patrol for the last 8-18 days: yellow",
}

_STREET_WORDS = (  # noqa: SIM905
    "东街 和平 新华 解放 人民 长安 建设 胜利 朝阳 东风 光明 红旗 幸福 文化 团结 前进 中山 "
    "北关 南门 西城 滨江 湖滨 青年 花园 振兴 永安 太平 安康 龙泉 桃源 金桥 银河 春晖 翠竹 "
    "锦绣 望江 五一 环城 月湖 石桥"
).split()
_STREET_SUFFIX = ("", "东", "西", "南", "北", "新")
_COMMUNITY_WORDS = (  # noqa: SIM905
    "和平 新村 育才 丽景 翠园 康乐 怡和 紫荆 金沙 阳光 玉泉 书院 锦华 百花 清风 松柏 梧桐 "
    "芙蓉 兰亭 海棠 荷塘 枫林 柳岸 杏坛 明珠 东苑 西苑 南湖 北园 安居 乐业 福寿"
).split()
_COMMUNITY_SUFFIX = ("", "里", "苑", "园", "坊", "湾", "庭", "居", "台", "坪", "峰", "堤", "源")

_KEY_CATEGORIES = (
    ("elderly_alone", 40),
    ("floating", 32),
    ("pregnant", 10),
    ("disabled", 10),
    ("community_correction", 8),
)
_NORMAL_CATEGORIES = (
    "sanitation",
    "road_facility",
    "neighbour_dispute",
    "illegal_construction",
    "safety_hazard",
    "public_order",
    "greening",
    "parking",
    "noise",
    "water_supply",
)
_MAJOR_CATEGORIES = ("major_dispute", "early_warning", "petition", "public_health")
_FLAGS = ("major_dispute", "early_warning", "petition")
_TIERS = (("community", 50), ("subdistrict", 25), ("department", 18), ("special", 7))
_TIER_DAYS = {"community": 1, "subdistrict": 2, "department": 3}
_SPECIAL_WORKDAYS = 5
_ZONE_SECONDS = {"red": 3600, "yellow": 7200, "blue": 14400}
_SECOND_REGISTER = {
    "elderly_alone": "disabled",
    "disabled": "elderly_alone",
    "floating": "pregnant",
    "pregnant": "floating",
    "community_correction": "floating",
}
_DUE_AFTER = frozenset({"monthly", "quarterly", "annual"})  # report kinds due after their period
_WORKER = "<worker>"  # a patrol by the grid's own worker; written as one of _WORKER_ROLES
_WORKER_ROLES = (None, None, None, None, None, None, "worker", "worker", "worker", "")

_DAY = 86400
_WORK_START = 7 * 3600 + 15 * 60  # 07:15
_WORK_END = 20 * 3600 + 15 * 60  # 20:15
_CUTOFF = 20 * 3600  # daily report cutoff 20:00


# --------------------------------------------------------------------------- layout


@dataclass
class _Grid:
    idx: int
    gid: str
    name: str
    community: str
    street: str
    zone: str | None
    worker: str
    head: str
    supervisor: str
    roles: set[str] = field(default_factory=set)
    rank: dict[str, int] = field(default_factory=dict)  # role → place among the role's grids
    households: list[tuple[str, str | None, int | None]] = field(default_factory=list)
    since: str | None = None  # grids.since
    start: int = 0  # the first day of history in service: no row of the grid is dated earlier


def _role_counts(grids: int) -> dict[str, int]:
    return {
        "major_open": 1,
        "flagged_today": 1,
        "coverage_critical": max(1 if grids < 40 else 2, grids // 100),
        "coverage_warning": max(1, round(grids * 0.06)),
        "key_overdue": grids // 20,
        "patrol_missed": max(1, grids // 100),
        "no_patrol_yesterday": max(1, grids // 100),
        "silent": max(2, round(grids / 20)),
        "incidents_overdue": max(2, round(grids * 0.08)),
        "supervisor_overdue": max(1, grids // 30),
    }


def _assign(grids: int) -> tuple[dict[str, list[int]], dict[int, str], list[int]]:
    """Roles, zones and National-Day grids: a function of the number of grids only."""
    rr = random.Random(grids * 1_000_003 + 7)
    order = list(range(grids))
    rr.shuffle(order)
    roles: dict[str, list[int]] = {}
    pos = 0
    for role, count in _role_counts(grids).items():
        roles[role] = sorted({order[(pos + k) % grids] for k in range(count)})
        pos += count
    # Zones: about 10 % of grids each; the missed-patrol grids are red by definition, and the
    # grid without patrols yesterday is left unzoned so it has exactly one reason.
    per_zone = max(1, round(grids * 0.1))
    zones: dict[int, str] = dict.fromkeys(roles["patrol_missed"], "red")
    keep_out = set(roles["no_patrol_yesterday"]) | set(zones)
    rest = [i for i in range(grids) if i not in keep_out]
    rr.shuffle(rest)
    it = iter(rest)
    for zone in ("red", "yellow", "blue"):
        have = sum(1 for z in zones.values() if z == zone)
        for _ in range(per_zone - have):
            i = next(it, None)
            if i is not None:
                zones[i] = zone
    national_day = sorted(rr.sample(range(grids), min(grids, max(2, round(grids * 0.1)))))
    return roles, zones, national_day


def _gid(i: int, grids: int) -> str:
    return f"G{i + 1:0{max(4, len(str(grids)))}d}"


def special_grids(grids: int = 60) -> dict[str, tuple[str, ...]]:
    """Grid ids per imperfection role (see `ROLES`), plus ``zone_red``/``zone_yellow``/
    ``zone_blue`` and ``national_day`` (grids with special-tier cases reported on the last
    working day before 1 October, when the history window includes it).

    Depends only on ``grids``. With very few grids roles share grids; from eleven grids on
    every role has grids of its own, and all other grids are green."""
    roles, zones, national_day = _assign(grids)
    out = {role: tuple(_gid(i, grids) for i in idx) for role, idx in roles.items()}
    for zone in ("red", "yellow", "blue"):
        out[f"zone_{zone}"] = tuple(_gid(i, grids) for i in sorted(zones) if zones[i] == zone)
    out["national_day"] = tuple(_gid(i, grids) for i in national_day)
    return out


def _street_name(s: int) -> str:
    n = len(_STREET_WORDS)
    word, suffix = _STREET_WORDS[s % n], _STREET_SUFFIX[(s // n) % len(_STREET_SUFFIX)]
    extra = s // (n * len(_STREET_SUFFIX))
    return f"{word}{suffix}{extra + 1 if extra else ''}街道"


def _community_name(c: int) -> str:
    n = len(_COMMUNITY_WORDS)
    word, suffix = _COMMUNITY_WORDS[c % n], _COMMUNITY_SUFFIX[(c // n) % len(_COMMUNITY_SUFFIX)]
    extra = c // (n * len(_COMMUNITY_SUFFIX))
    return f"{word}{suffix}{extra + 1 if extra else ''}社区"


def _layout(grids: int) -> list[_Grid]:
    n_streets = max(1, round(grids / 20))
    n_communities = min(grids, max(n_streets, round(grids / 5), 1))
    roles, zones, _ = _assign(grids)
    first_worker = 1
    head_base = first_worker + grids  # one grid head per community
    supervisor_base = head_base + n_communities  # one supervisor per street
    width = max(4, len(str(supervisor_base + n_streets)))
    out: list[_Grid] = []
    first_of_community = 0
    for i in range(grids):
        c = i * n_communities // grids
        if i == 0 or c != (i - 1) * n_communities // grids:
            first_of_community = i
        s = c * n_streets // n_communities
        street, community = _street_name(s), _community_name(c)
        out.append(
            _Grid(
                idx=i,
                gid=_gid(i, grids),
                name=f"{street}-{community}-第{i - first_of_community + 1}网格",
                community=community,
                street=street,
                zone=zones.get(i),
                worker=f"W{first_worker + i:0{width}d}",
                head=f"W{head_base + c:0{width}d}",
                supervisor=f"W{supervisor_base + s:0{width}d}",
            )
        )
    for role, idx in roles.items():
        for j, i in enumerate(idx):
            out[i].roles.add(role)
            out[i].rank[role] = j
    return out


#: Roles whose data needs history before a recent ``since``: a grid that came into service
#: lately is never dealt one of them.
_NEEDS_HISTORY = frozenset({"major_open", "incidents_overdue", "supervisor_overdue"})


def _starts(grids: int) -> tuple[list[int], int | None]:
    """The grids that came into service lately (ten days before today) and the one that began
    this month; role-free grids first. A function of the number of grids only."""
    roles, _, national_day = _assign(grids)
    held = {i for role in _NEEDS_HISTORY for i in roles[role]} | set(national_day)
    busy = {i for idx in roles.values() for i in idx}
    rr = random.Random(grids * 1_000_003 + 11)
    order = [i for i in range(grids) if i not in held]
    rr.shuffle(order)
    order.sort(key=lambda i: i in busy)
    recent_n = max(1, round(grids / 30))
    recent = sorted(order[:recent_n])
    month = order[recent_n] if len(order) > recent_n else None
    return recent, month


# --------------------------------------------------------------------------- the city


class _City:
    """Generators for each table. Times are integer seconds since local midnight of the first
    day of history (day 0); day ``self.T`` is today; nothing is written after ``now_s``."""

    def __init__(self, grids: int, seed: int, now: datetime, days: int) -> None:
        self.seed = seed
        self.now = now
        self.D = days
        self.T = days - 1
        self.today = now.date()
        self.base = self.today - timedelta(days=self.T)
        self.now_s = self.T * _DAY + now.hour * 3600 + now.minute * 60 + now.second
        self.dates = [(self.base + timedelta(days=k)).isoformat() for k in range(days)]
        self.daystr = [d + " " for d in self.dates]
        self.tod = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
        self.grids = _layout(grids)
        self._since()
        self._workdays: dict[int, bool] = {}
        self._households()

    def rng(self, part: str) -> random.Random:
        return random.Random(f"gridwatch-demo:{self.seed}:{part}")

    def ts(self, s: int) -> str:
        return self.daystr[s // _DAY] + self.tod[s % _DAY]

    def day_index(self, d: date) -> int:
        return (d - self.base).days

    def _since(self) -> None:
        """``grids.since``: years ago for most grids, NULL for every tenth (the checks then count
        from the earliest row), ten days ago for the recent grids, and after the 1st of this
        month (today on the 1st itself) for one."""
        recent, month = _starts(len(self.grids))
        today = self.today
        first = today.replace(day=1)
        for g in self.grids:
            if g.idx in recent:
                since: date | None = today - timedelta(days=10)
            elif g.idx == month:
                since = min(today, first + timedelta(days=max(1, (today.day - 1) // 2)))
            elif g.idx % 10 == 9:
                since = None
            else:
                since = (self.base - timedelta(days=365 + g.idx * 97 % 1461)).replace(day=1)
            if since is not None:
                g.since = since.isoformat()
                g.start = max(0, self.day_index(since))

    # ---------------------------------------------------------------- calendar

    def workday(self, k: int) -> bool:
        """Chinese working day (statutory holidays, make-up days); weekends-off where the
        holiday data has no entry for the year."""
        hit = self._workdays.get(k)
        if hit is None:
            d = self.base + timedelta(days=k)
            try:
                import chinese_calendar

                hit = bool(chinese_calendar.is_workday(d))
            except (ImportError, NotImplementedError):
                hit = d.weekday() < 5
            self._workdays[k] = hit
        return hit

    def nth_workday_after(self, k: int, n: int) -> int:
        while n:
            k += 1
            if self.workday(k):
                n -= 1
        return k

    def deadline(self, reported: int, tier: str, extended: bool) -> int:
        mult = 2 if extended else 1
        if tier == "special":
            return (self.nth_workday_after(reported // _DAY, _SPECIAL_WORKDAYS * mult) + 1) * _DAY
        return reported + _TIER_DAYS[tier] * mult * _DAY

    # ---------------------------------------------------------------- households

    def _households(self) -> None:
        """Households with their visit plan: ``None`` visited on cadence up to today, else the
        day index of the last visit (negative: never visited in the history)."""
        r = self.rng("households")
        cats = [c for c, _ in _KEY_CATEGORIES]
        weights = [w for _, w in _KEY_CATEGORIES]
        width = max(6, len(str(len(self.grids) * 300)))
        n_h = 0
        for g in self.grids:
            n = r.randint(150, 300)
            key_n = round(n * r.uniform(0.08, 0.12))
            key_pos = set(r.sample(range(n), key_n))
            category = [r.choices(cats, weights)[0] if j in key_pos else None for j in range(n)]
            ordinary = [j for j in range(n) if j not in key_pos]
            keys = sorted(key_pos)
            if g.roles & {"coverage_critical", "coverage_warning"}:
                lo, hi = (0.24, 0.28) if "coverage_critical" in g.roles else (0.12, 0.17)
                lapsed_n = math.ceil(n * r.uniform(lo, hi))
                key_lapsed = min(len(keys), max(1, round(lapsed_n * key_n / n)))
                lapsed = r.sample(keys, key_lapsed) + r.sample(ordinary, lapsed_n - key_lapsed)
            else:
                lapsed = r.sample(ordinary, int(n * r.uniform(0.0, 0.05)))
                if "key_overdue" in g.roles and keys:
                    lapsed += r.sample(keys, min(len(keys), r.randint(1, 3)))
            last: dict[int, int] = {}
            for j in lapsed:
                # last visit at least 31 days before today, a quarter never visited at all
                last[j] = -1 if r.random() < 0.25 else self.T - 31 - r.randint(0, 45)
            for j in range(n):
                n_h += 1
                g.households.append((f"H{n_h:0{width}d}", category[j], last.get(j)))

    def household_rows(self) -> Iterator[tuple]:
        for g in self.grids:
            gid = g.gid
            for hid, cat, _ in g.households:
                yield (hid, gid, cat)

    def household_category_rows(self) -> Iterator[tuple]:
        """Second registers: about one key household in seven is on another register too (the
        main category repeated or not, as platforms differ), and about one ordinary household in
        a hundred is on a register only here, one visited on cadence, so that no grid gains an
        overdue key household from this table."""
        r = self.rng("household_categories").random
        for g in self.grids:
            for hid, cat, last in g.households:
                if cat:
                    if r() < 0.15:
                        if r() < 0.5:
                            yield (hid, cat)
                        yield (hid, _SECOND_REGISTER[cat])
                elif last is None and r() < 0.01:
                    yield (hid, "disabled" if r() < 0.6 else "elderly_alone")

    def grid_rows(self) -> Iterator[tuple]:
        for g in self.grids:
            yield (g.gid, g.name, g.community, g.street, g.zone, g.since)

    # ---------------------------------------------------------------- visits

    def visit_rows(self) -> Iterator[tuple]:
        """Every household about monthly (gaps of 20–29 days, so the last visit always falls
        in the 30-day window), lapsed households stop 31+ days before today."""
        r = self.rng("visits").random
        daystr, tod, now_s, T = self.daystr, self.tod, self.now_s, self.T
        n = 0
        for g in self.grids:
            gid, worker, head = g.gid, g.worker, g.head
            if g.start:
                for hid, stamp in self._first_visits(g, r):
                    n += 1
                    yield (f"V{n:08d}", hid, gid, worker if r() >= 0.08 else head, stamp)
                continue
            for hid, _, last in g.households:
                # on cadence: the last visit falls within one gap of today
                d = T - int(r() * min(20 + int(r() * 10), T + 1)) if last is None else last
                stamps = []
                while d >= 0:
                    sec = 30600 + int(r() * 37800)  # 08:30–19:00
                    if d * _DAY + sec > now_s:  # later today: make it yesterday
                        d -= 1
                        if d < 0:
                            break
                    stamps.append(daystr[d] + tod[sec])
                    d -= 20 + int(r() * 10)
                for stamp in reversed(stamps):
                    n += 1
                    yield (f"V{n:08d}", hid, gid, worker if r() >= 0.08 else head, stamp)

    def _first_visits(self, g: _Grid, r: Callable[[], float]) -> Iterator[tuple[str, str]]:
        """A grid new in service: its worker calls on every household in the first week, then
        about monthly; lapsed households are not reached (their old visits predate the grid)."""
        daystr, tod, now_s, T, start = self.daystr, self.tod, self.now_s, self.T, g.start
        for hid, _, last in g.households:
            if last is not None:
                continue
            d = start + int(r() * min(7, T - start + 1))
            while d <= T:
                sec = 30600 + int(r() * 37800)  # 08:30–19:00
                if d * _DAY + sec > now_s:  # later today: make it yesterday
                    d -= 1
                    if d < start:
                        break
                yield hid, daystr[d] + tod[sec]
                d += 20 + int(r() * 10)

    # ---------------------------------------------------------------- patrols

    def patrol_rows(self) -> Iterator[tuple]:
        """Unzoned grids once or twice a day; zoned grids through working hours at 60–95 % of
        their zone's interval; the street's supervisor every sixth day (never more than 7 × 24 h
        apart, whatever the hour: weekly at a drifting hour would leave gaps just over a week),
        except in the supervisor-overdue grids; the grid head on about one day in 25. The
        worker's role is written NULL, ``worker`` or empty, as platforms do."""
        r = self.rng("patrols").random
        ts, now_s, T = self.ts, self.now_s, self.T
        n = 0
        for g in self.grids:
            gid, worker, sup, head = g.gid, g.worker, g.supervisor, g.head
            no_yesterday = "no_patrol_yesterday" in g.roles
            missed = "patrol_missed" in g.roles
            # the supervisor stopped coming 8-12 days before today (so last came 8-18 days ago)
            sup_until = T - 8 - g.idx % 5 if "supervisor_overdue" in g.roles else T
            interval = _ZONE_SECONDS.get(g.zone or "")
            for d in range(g.start, self.D):
                if no_yesterday and d >= T - 1:
                    continue
                day0 = d * _DAY
                stop = now_s - 7200 if missed and d == T else now_s
                times: list[tuple[int, str, str | None]] = []
                if interval:
                    t = _WORK_START + int(r() * interval * 0.9)
                    while t <= _WORK_END:
                        times.append((day0 + t, worker, _WORKER))
                        t += int(interval * (0.6 + 0.35 * r()))
                else:
                    times.append((day0 + 28800 + int(r() * 36000), worker, _WORKER))  # 08:00–18:00
                    if r() < 0.2:
                        times.append((day0 + 28800 + int(r() * 36000), worker, _WORKER))
                if (d + g.idx) % 6 == 0 and d <= sup_until:  # 09:00–17:00
                    times.append((day0 + 32400 + int(r() * 28800), sup, "supervisor"))
                if r() < 0.04:  # 08:00–18:00
                    times.append((day0 + 28800 + int(r() * 36000), head, "head"))
                times.sort(key=lambda t: t[0])
                for s, who, role in times:
                    if s <= stop:
                        n += 1
                        yield (f"P{n:08d}", gid, who, ts(s), _WORKER_ROLES[n % 10] if role is _WORKER else role)

    # ---------------------------------------------------------------- incidents

    def incident_rows(self) -> Iterator[tuple]:
        r = self.rng("incidents")
        rand = r.random
        tiers = [t for t, _ in _TIERS]
        tier_w = [w for _, w in _TIERS]
        now_s = self.now_s
        n = c = 0

        def row(
            gid: str,
            cat: str,
            sev: str,
            tier: str,
            times: list[int | None],
            reopened: int,
            extended: int,
        ) -> tuple:
            nonlocal n
            n += 1
            # a stage that lies after now has not happened yet, nor anything after it
            out: list[str | None] = []
            cut = False
            for s in times:
                cut = cut or s is None or s > now_s
                out.append(None if cut or s is None else self.ts(s))
            return (f"E{n:07d}", gid, cat, sev, tier, *out, reopened, extended)

        def stages(rep: int, close: int) -> list[int | None]:
            acc = rep + 180 + int(rand() * 3420)
            dis = acc + 300 + int(rand() * 6900)
            close = max(close, dis + 3600)
            res = max(dis + 600, close - 1800 - int(rand() * 5400))  # verified 0.5-2 h later
            return [rep, acc, dis, res, close]

        for g in self.grids:
            gid = g.gid
            for d in range(g.start, self.D):
                count = (rand() < 0.1) + (rand() < 0.01)
                for _ in range(count):
                    rep = d * _DAY + 25200 + int(rand() * 50400)  # 07:00–21:00
                    if rep > now_s:
                        continue
                    tier = r.choices(tiers, tier_w)[0]
                    cat = r.choice(_NORMAL_CATEGORIES)
                    sev = "normal"
                    due = self.deadline(rep, tier, False)
                    limit = due - rep
                    mode = rand()
                    c += 1
                    if c % 40 in (7, 23):  # a few of each whatever the luck of the draw
                        mode = 0.04 if c % 40 == 7 else 0.06
                    reopened = extended = 0
                    close = rep + int(limit * (0.3 + 0.6 * rand()))
                    if mode < 0.03:  # closed late, only if that is already history
                        late = due + 3600 + int(rand() * 2 * _DAY)
                        if late <= now_s:
                            close = late
                    elif mode < 0.05:  # extension approved, closed within the doubled limit
                        extended = 1
                        due2 = self.deadline(rep, tier, True)
                        close = due + int((due2 - due) * (0.1 + 0.8 * rand()))
                    elif mode < 0.07:  # sent back once or twice, closed again on time
                        close = rep + int(limit * (0.6 + 0.35 * rand()))
                        if close <= now_s:
                            reopened = 1 + (rand() < 0.2)
                    elif mode < 0.075 and close + 3600 <= now_s:  # a major case, long closed
                        cat, sev = r.choice(_MAJOR_CATEGORIES), "major"
                    yield row(gid, cat, sev, tier, stages(rep, close), reopened, extended)
            if "major_open" in g.roles:
                rep = max(0, now_s - 7200 - int(rand() * 14400))
                acc, dis = rep + 600, rep + 2400
                yield row(gid, "major_dispute", "major", "special", [rep, acc, dis, None, None], 0, 0)
            if "incidents_overdue" in g.roles:
                j = g.rank["incidents_overdue"]
                # (tier, its limit in days, extended, overdue by at least this many days)
                cases = [("department", 3, 0, 1)]  # 超期, by 1-2 days
                if j % 3 in (1, 2):
                    cases.append(("community", 1, 0, 8))  # 二次通报, by 8-13 days
                if j % 3 in (0, 2):
                    cases.append(("subdistrict", 2, j % 3 == 2, 15))  # 挂牌督办, by 15-20 days
                for tier, days, extended, late in cases:
                    span = 1 if late == 1 else 5
                    limit = days * (2 if extended else 1)
                    rep = max(0, now_s - int(_DAY * (limit + late + span * rand())))
                    acc = rep + 900
                    dis = acc + 3600
                    resolved = late == 8 and j % 2 == 1 and dis + _DAY <= now_s  # awaits verification
                    res = dis + _DAY if resolved else None
                    cat = r.choice(_NORMAL_CATEGORIES)
                    yield row(gid, cat, "normal", tier, [rep, acc, dis, res, None], 0, int(extended))
        # Special cases reported on the last working day before National Day: five working
        # days run past the holiday, closed on the 2nd-4th working day after it.
        _, _, national_day = _assign(len(self.grids))
        for year in sorted({self.today.year - 1, self.today.year}):
            k = self.day_index(date(year, 10, 1)) - 1
            while not self.workday(k):
                k -= 1
            if not 0 <= k <= self.T:
                continue
            for i in national_day:
                g = self.grids[i]
                rep = k * _DAY + 50400 + int(rand() * 12600)  # 14:00–17:30
                if rep > now_s:
                    continue
                close_day = self.nth_workday_after(k, 2 + int(rand() * 3))
                close = close_day * _DAY + 36000 + int(rand() * 25200)  # 10:00–17:00
                cat = r.choice(("illegal_construction", "safety_hazard", "road_facility"))
                yield row(g.gid, cat, "normal", "special", stages(rep, close), 0, 0)

    # ---------------------------------------------------------------- reports

    def report_rows(self) -> Iterator[tuple]:
        r = self.rng("reports")
        rand = r.random
        ts, dates, now_s, T = self.ts, self.dates, self.now_s, self.T
        n = 0

        def rid() -> str:
            nonlocal n
            n += 1
            return f"R{n:08d}"

        for g in self.grids:
            gid = g.gid
            silent_days = 3 + g.idx % 3 if "silent" in g.roles else 0
            flagged = "flagged_today" in g.roles
            for d in range(g.start, self.D):
                if d > T - silent_days:
                    continue
                if d < T and rand() < 0.01:  # a forgotten day in the past
                    continue
                late = d < T and rand() < 0.015
                sec = (72300 + int(rand() * 12300)) if late else (27000 + int(rand() * 43200))
                s = d * _DAY + sec
                x = rand()
                flag = "ok" if x < 0.7 else None
                if d < T and x > 0.998:
                    flag = r.choice(_FLAGS)
                if d == T and flagged:
                    s, flag = max(T * _DAY, min(s, now_s - 60)), "petition"
                if s > now_s:
                    continue
                yield (rid(), gid, "daily", dates[d], ts(s), flag)
        yield from self._periodic(r, rid)

    def _periodic(self, r: random.Random, rid: Callable[[], str]) -> Iterator[tuple]:
        """Weekly, twice-weekly, monthly, quarterly and annual reports for some grids: on time
        as a rule, a few late, none missing once due, with two exceptions the rule book names.
        One grid never sent an older month's report (the month before the last one due) but
        sent the next. One report in eight is written without a period (NULL or empty),
        only where the period it most plausibly reports on is the one it was filed for. A grid
        new in service reports only periods that end on or after its first day."""
        rand = r.random
        # kind, period, the period's last day, first day to file, due day, last day when late
        plans: list[tuple[str, str, date, date, date, date]] = []
        first, today = self.base - timedelta(days=120), self.today
        d = first
        while d <= today:
            if d.weekday() == 4:  # Friday: the weekly form, due that day
                y, w, _ = d.isocalendar()
                plans.append(("weekly", f"{y}-W{w:02d}", d + timedelta(2), d - timedelta(1), d, d + timedelta(3)))
            if d.weekday() in (1, 4):  # Tuesday and Friday, by the cutoff
                plans.append(("twice_weekly", d.isoformat(), d, d, d, d))
            if d.day == 1:  # the previous month, due by the 5th
                prev = d - timedelta(days=1)
                plans.append(("monthly", f"{prev:%Y-%m}", prev, d, d + timedelta(4), d + timedelta(8)))
                if d.month in (1, 4, 7, 10):
                    q = f"{prev.year}-Q{(prev.month - 1) // 3 + 1}"
                    plans.append(("quarterly", q, prev, d, d + timedelta(14), d + timedelta(19)))
                if d.month == 1:
                    plans.append(
                        ("annual", str(prev.year), prev, d + timedelta(9), d + timedelta(30), d + timedelta(33))
                    )
            d += timedelta(days=1)
        share = {
            "weekly": 0.3,
            "twice_weekly": 0.1,
            "monthly": 0.5,
            "quarterly": 0.2,
            "annual": 0.2,
        }
        kinds = {g.gid: {k for k, p in share.items() if rand() < p} for g in self.grids}
        # the grid with a gap: the first one in service all along that files monthly reports
        old = [g for g in self.grids if g.start == 0 and (g.since is None or g.since < first.isoformat())]
        gap = next((g for g in old if "monthly" in kinds[g.gid]), old[0] if old else None)
        monthly_due = [p for k, p, _, _, due, _ in plans if k == "monthly" and due < today]
        skipped = (gap.gid, monthly_due[-2]) if gap is not None and len(monthly_due) >= 2 else None
        if skipped:
            kinds[skipped[0]].add("monthly")
        for g in self.grids:  # the grids new in service send the monthly reports they owe
            if g.start:
                kinds[g.gid].add("monthly")
        blank = 0
        for g in self.grids:
            since = self.base + timedelta(days=g.start)
            sent: dict[str, int] = {}  # kind → when its latest period's report came (seconds)
            for kind, period, ends, start, due, late_by in plans:
                if kind not in kinds[g.gid] or (g.start and ends < since) or (g.gid, period) == skipped:
                    continue
                late = rand() < 0.04
                if kind == "twice_weekly":
                    sec = (72600 + int(rand() * 7200)) if late else (28800 + int(rand() * 41400))
                    day = start
                else:
                    lo, hi = (due + timedelta(1), late_by) if late else (start, due)
                    day = lo + timedelta(days=int(rand() * ((hi - lo).days + 1)))
                    sec = 30600 + int(rand() * 37800)
                s = self.day_index(day) * _DAY + sec
                if late and s > self.now_s:  # never leave a report overdue: file it on time
                    s = self.day_index(due) * _DAY + min(sec, _CUTOFF - 1800)
                if g.start and s < g.start * _DAY:  # owed from before the grid began: filed on its first day
                    s = g.start * _DAY + sec
                if not 0 <= s <= self.now_s:
                    sent.pop(kind, None)
                    continue
                written: str | None = period
                # Without a period, a monthly, quarterly or annual report is the last period
                # ended when it came, which is its own. A weekly or twice-weekly one is the
                # previous period if that has no report yet: blank it only after that came.
                if (
                    not g.start
                    and not (g is gap and kind == "monthly")
                    and (kind in _DUE_AFTER or sent.get(kind, s) < s)
                ):
                    blank += 1
                    if blank % 16 in (1, 9):
                        written = None if blank % 16 == 1 else ""
                sent[kind] = s
                yield (rid(), g.gid, kind, written, self.ts(s), None)


# --------------------------------------------------------------------------- writing


def _local_now(now: datetime | None, tz: str) -> datetime:
    zone = ZoneInfo(tz)
    if now is None:
        now = datetime.now(zone)
    elif now.tzinfo is not None:
        now = now.astimezone(zone)
    return now.replace(tzinfo=None, microsecond=0)


def _objects(ddl: str) -> set[tuple[str, str]]:
    return {(kind.lower(), name) for kind, name in re.findall(r"CREATE (?:UNIQUE )?(TABLE|INDEX) (\w+)", ddl)}


_LEGACY = _objects(_DDL) | _objects(_INDEXES)
"""Every table and index of a demo city: one written before the marker is recognised by them."""


def not_a_demo_city(path: str | Path) -> str | None:
    """Why ``path`` may not be overwritten by a demo city, or None when it may: it does not exist,
    is empty, or is one (its ``application_id``, or exactly the demo's tables and indexes)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return None
    if not path.is_file():
        return "it is not a regular file"
    if path.stat().st_size == 0:
        return None
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            objects = set(con.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:  # a locked or unreadable file is refused too, saying why
        return "it is not an SQLite database" if "not a database" in str(exc) else f"it cannot be read: {exc}"
    if app_id == APPLICATION_ID or (app_id == 0 and objects == _LEGACY):
        return None
    return "it is an SQLite database gridwatch demo did not write"


def generate(
    path: str | Path,
    *,
    grids: int = 60,
    seed: int = 1,
    now: datetime | None = None,
    days: int = 90,
    tz: str = "Asia/Shanghai",
) -> dict[str, int]:
    """Write the demo city; returns row counts per table. Overwrites an existing file (``gridwatch
    demo`` first asks `not_a_demo_city`, so ``--db`` pointed at a platform's copy never wipes it).

    ``now`` is tz-aware or naive local time (default: the current time); the history covers
    ``days`` calendar days up to and including today and ends at ``now``. The file is built
    under a temporary name next to ``path`` and renamed into place when complete."""
    if grids < 1:
        raise ValueError("grids must be at least 1")
    if days < 1:
        raise ValueError("days must be at least 1")
    city = _City(grids, seed, _local_now(now, tz), days)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        counts = _write(tmp, city)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return counts


def _write(file: Path, city: _City) -> dict[str, int]:
    con = sqlite3.connect(file, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode = OFF")
        con.execute("PRAGMA synchronous = OFF")
        con.execute("PRAGMA cache_size = -131072")
        con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        con.execute("BEGIN")
        for stmt in _DDL.split(";"):
            if stmt.strip():
                con.execute(stmt)
        sources = {
            "grids": city.grid_rows(),
            "households": city.household_rows(),
            "household_categories": city.household_category_rows(),
            "visits": city.visit_rows(),
            "patrols": city.patrol_rows(),
            "incidents": city.incident_rows(),
            "reports": city.report_rows(),
        }
        counts: dict[str, int] = {}
        for table, rows in sources.items():
            cols = SCHEMA[table]
            sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            counts[table] = con.executemany(sql, rows).rowcount
        for stmt in _INDEXES.split(";"):
            if stmt.strip():
                con.execute(stmt)
        con.execute("COMMIT")
        con.execute("PRAGMA analysis_limit = 1000")
        con.execute("ANALYZE")
    finally:
        con.close()
    return counts
