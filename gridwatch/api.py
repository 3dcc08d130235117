"""The stable plugin API: the base classes and values a plugin works with.

A plugin subclasses :class:`Source`, :class:`Check` or :class:`Notifier`, declares its
options as a nested pydantic model named ``Options`` and returns the class from the matching
``register_*_types`` hook. The core validates every instance's options against that model,
so third-party types get the same precise config errors as the built-in ones.

The base classes are generic over their options, so ``self.options`` has the plugin's own
type for a type checker: ``class PatrolsCheck(Check["PatrolsCheck.Options"])`` with a nested
``Options``, or ``class HydrantsCheck(Check[HydrantsOptions])`` with ``Options = HydrantsOptions``.
"""

from __future__ import annotations

import builtins
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Generic, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from typing_extensions import TypeVar

from gridwatch.durations import Duration
from gridwatch.names import DisplayNames, Lang
from gridwatch.schema import ISO, STANDARD_CODES, check_time_format

PLUGIN_API_VERSION = 1
"""Bumped when a change to this module would break existing plugins."""

ROW_KEY = "__key"
"""The column under which :meth:`Source.read_since` hands each row's key."""

ROW_EDITED = "__edited"
"""Set (true) on a row :meth:`Source.read_since` hands on again because it changed after it was
read (a source that follows edits, :attr:`Follow.edits`); absent on a row read for the first time."""

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
MAX_LABEL_VALUE = 1024
# names validate_sample has accepted before: a check yields the same few names thousands of
# times a run, so they are matched once (bounded, in case a plugin invents names per sample)
_GOOD_METRICS: set[str] = set()
_GOOD_LABELS: set[str] = set()
_GOOD_NAMES_MAX = 10_000


class Options(BaseModel):
    """Base of every options model: unknown keys are errors, so a typo never goes unnoticed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_Options = Options  # the base model, under a name the classes' own ``Options`` attributes do not hide

OptionsT_co = TypeVar("OptionsT_co", bound=Options, default=Options, covariant=True)
"""The options model of a check or source type: what ``self.options`` is. Covariant, so a
``Check["PatrolsCheck.Options"]`` is a :class:`Check` wherever the core takes any check."""

_O = TypeVar("_O", bound=Options)  # the options :meth:`Check.produces` takes: those of ``cls``


class SourceUnavailable(Exception):
    """The source cannot be reached right now (missing file, refused connection, lock).

    Raised by a source; the core marks the source down and retries on the next run.
    """


class Resync(Exception):
    """A cursor from :meth:`Source.read_since` no longer applies (the file was replaced, rows
    were deleted): the caller must start again from a full read."""


class CheckError(Exception):
    """A check cannot produce its samples for a reason the operator must fix (bad query...)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one series: what a check yields."""

    metric: str
    labels: Mapping[str, str]
    value: float

    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.metric, tuple(sorted(self.labels.items()))


def validate_sample(obj: object) -> Sample:
    """Coerce what a plugin yielded into a well-formed Sample, or say exactly what is wrong.

    Plugins are other people's code: garbage must become a reported error, never a broken
    ``/metrics`` page. A well-formed Sample is taken as it is, labels dict included (a check
    yields tens of thousands a run): a check must not change a dict it has yielded.
    """
    if type(obj) is Sample and obj.metric in _GOOD_METRICS and type(obj.labels) is dict:
        given, value = obj.labels, obj.value
        if (
            (type(value) is float or type(value) is int)
            and value == value  # not NaN
            and _GOOD_LABELS.issuperset(given)
            and all(type(v) is str and len(v) <= MAX_LABEL_VALUE for v in given.values())
        ):
            return obj if type(value) is float else Sample(obj.metric, given, float(value))
    if not isinstance(obj, Sample):
        raise CheckError(f"a check yielded {type(obj).__name__}, not a Sample")
    if not isinstance(obj.metric, str) or not METRIC_NAME.match(obj.metric):
        raise CheckError(f"invalid metric name {obj.metric!r}")
    labels: dict[str, str] = {}
    for k, v in dict(obj.labels).items():
        if not isinstance(k, str) or not LABEL_NAME.match(k) or k.startswith("__"):
            raise CheckError(f"invalid label name {k!r} on {obj.metric}")
        v = "" if v is None else str(v)
        if len(v) > MAX_LABEL_VALUE:
            raise CheckError(f"label {k} on {obj.metric} is longer than {MAX_LABEL_VALUE} characters")
        labels[k] = v
    try:
        value = float(obj.value)
    except (TypeError, ValueError):
        raise CheckError(f"value of {obj.metric} is not a number: {obj.value!r}") from None
    if math.isnan(value):
        raise CheckError(f"value of {obj.metric} is NaN")
    if len(_GOOD_METRICS) + len(_GOOD_LABELS) < _GOOD_NAMES_MAX:
        _GOOD_METRICS.add(obj.metric)
        _GOOD_LABELS.update(labels)
    return Sample(obj.metric, labels, value)


@dataclass(frozen=True)
class Environment:
    """What a plugin instance may know about where it runs."""

    base_dir: Path  # the config file's directory: relative paths resolve against it
    tz: tzinfo  # the configured timezone; naive timestamps are local time in it
    state_dir: Path  # where a plugin may keep files of its own
    loop: Any = None  # the daemon's event loop, for sources that do async I/O
    names: DisplayNames = field(default_factory=DisplayNames)
    """the display names of codes: every check type's, with the operator's ``[display_names]``"""

    def resolve(self, value: str | Path) -> Path:
        """A path from config: absolute as given, relative to the config file's directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p


@dataclass
class RunContext:
    """Passed to every check run: the evaluation time and the ways to report trouble."""

    now: datetime  # tz-aware evaluation time (``--now`` or the clock)
    tz: tzinfo
    deadline: float = math.inf  # time.monotonic() value by which the run must finish
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)
    read: Counter[str] = field(default_factory=Counter)
    """source -> rows the run judged, rejected ones included: every row :func:`gridwatch.rows.clean`
    was given, and those a source vouched for (folded by :meth:`Source.read_latest`, read again
    unchanged). What the share of rows rejected is of: more than half rejected fails the run."""
    partial: bool | None = None
    """True when the run read only what changed since the check's last run (a
    :class:`gridwatch.feeds.Tracker` says so): a handful of rows, no verdict on the source, so
    the run keeps the last full read's (:mod:`gridwatch.pipeline.rejected`). None or False: the
    run read everything."""
    extras: dict[str, Any] = field(default_factory=dict)  # services later features add
    grids: Callable[[], GridSet] | None = None
    """The grid registry (``[grids] source``), loaded at most once per run; None without one."""
    state: Any = None
    """A :class:`gridwatch.store.PluginState` for tables a check keeps between runs."""
    calendar: Any = None
    """The :class:`gridwatch.calendar.WorkCalendar` with the operator's overrides."""
    clock: Callable[[], float] = time.time
    """The wall clock (epoch seconds), injectable for tests. Figures are as of ``now``; the clock
    only tells a replay (``now`` in the past) from a timestamp that is wrong (DOMAIN.md §5)."""
    future_tolerance: float = 300.0
    """How far past the clock a timestamp may lie before it is a bad row (``future_tolerance``)."""

    def registry(self) -> GridSet:
        """The grids this instance watches; a CheckError when no ``[grids] source`` is set."""
        if self.grids is None:
            raise CheckError("this check needs the grid registry: set [grids] source in the config")
        return self.grids()

    def reject(self, source: str, reason: str, example: str = "", rows: int = 1) -> None:
        """Count bad rows by reason; keep the first example. Never put personal ids in it."""
        key = (source, reason)
        self.rejected[key] += rows
        self.examples.setdefault(key, example)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


TimeFormat = Annotated[str, AfterValidator(check_time_format)]
"""``iso``, ``epoch``, ``epoch_ms`` or a ``strptime`` pattern, checked when the config loads."""


class TableOptions(Options):
    """Options every table-reading source shares: how its tables map onto the standard schema.

    A real platform's database is read as it is, without a view (which needs write access to
    it): ``tables`` and ``columns`` rename, ``formats`` says how a timestamp column is written,
    ``codes`` turns the platform's code values into the standard ones.
    """

    tables: dict[str, str] = {}
    """standard table name -> the source's table (or file, or URL path)"""
    columns: dict[str, dict[str, str]] = {}
    """standard table name -> {standard column -> the source's column}"""
    formats: dict[str, dict[str, TimeFormat]] = {}
    """standard table name -> {standard timestamp column -> its format}; ``iso`` by default"""
    codes: dict[str, dict[str, dict[str, str]]] = {}
    """standard table name -> {standard column -> {the source's value -> the standard value}};
    a value a mapped column holds that its mapping does not name is a bad row (``unmapped_code``)"""

    @field_validator("codes")
    @classmethod
    def _standard_codes(cls, v: dict[str, dict[str, dict[str, str]]]) -> dict[str, dict[str, dict[str, str]]]:
        # a mapping onto a value no check knows would drop every row it maps, silently
        for table, columns in v.items():
            for column, mapping in columns.items():
                allowed = STANDARD_CODES.get(table, {}).get(column)
                wrong = sorted({to for to in mapping.values() if allowed is not None and to not in allowed})
                if wrong:
                    raise ValueError(
                        f"codes.{table}.{column} maps onto {', '.join(map(repr, wrong))}: the standard "
                        f"values of {table}.{column} are {', '.join(allowed or ())}"
                    )
        return v


YELLOW: Final = "yellow"
RED: Final = "red"


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a grid's light is not green (DOMAIN.md §4), in words an operator can act on.

    A check gives these from its own samples (:meth:`Check.reasons`); the core only combines
    them with the firing alerts, so a plugin's check colours a grid exactly as a bundled one.
    """

    grid: str
    light: Literal["yellow", "red"]
    code: str  # stable, for machines: ``/api/v1/grids`` ``details[].code``
    text: str  # what a person reads, with no code value in it (DOMAIN.md §8)
    metric: str = ""  # the metric it explains: an alert on the same metric only raises its colour,
    labels: Mapping[str, str] = field(default_factory=dict)  # ... if the alert has these labels too


@dataclass(frozen=True, slots=True)
class Tally:
    """A count one grid contributes to the digests (通报, DOMAIN.md §7), summed per street.

    A check gives these from its own samples (:meth:`Check.tallies`), so the digests name no
    check's metric: the incidents check counts its cases per escalation level this way, and a
    plugin's check adds a section of its own (消防栓超期未检) the same way.
    """

    grid: str
    section: str  # the heading the counts go under, in words people read: "案件督办"
    code: str  # stable, for machines (the webhook's JSON): "incidents_supervised"
    title: str  # what people call the count, no code value in it: "挂牌督办"
    value: float
    unit: str = ""  # the measure word after the number: "件"


Kind = Literal["number", "count", "ratio", "timestamp", "seconds", "flag", "status"]
"""How a metric's values read: ``count`` a whole number, ``ratio`` 0–1 (shown as a percentage),
``timestamp`` Unix seconds (shown as a local time), ``seconds`` a duration, ``flag`` 0/1 (no/yes),
``status`` a code whose meanings :attr:`Title.values` gives, ``number`` anything else."""


@dataclass(frozen=True, slots=True)
class Title:
    """What people call a metric, in Chinese and English, and how its values read.

    A check gives one per metric in :attr:`Check.titles`; the status board shows them in a
    grid's detail, so a plugin's metric reads as well as a bundled one and the core names none.
    """

    zh: str
    en: str
    kind: Kind = "number"
    values: Mapping[int, tuple[str, str]] = field(default_factory=dict)
    """a ``status`` metric's codes: value -> (中文, English), e.g. ``{0: ("已按时报送", "on time")}``"""

    def value_title(self, value: float) -> dict[str, str] | None:
        """The name of a ``status`` value in both languages; None for a value without one."""
        names = self.values.get(int(value)) if math.isfinite(value) and value == int(value) else None
        return None if names is None else {"zh": names[0], "en": names[1]}


@dataclass(frozen=True, slots=True)
class Ratio:
    """A ratio metric's numerator and denominator, two count metrics with the ratio's labels.

    Roll-ups (DOMAIN.md §7) add the numerators and the denominators of many grids and divide the
    sums, never average the grids' ratios: a check declares them in :attr:`Check.ratios`, and
    publishes both counts for every series, 0 included, even when the ratio itself is left out."""

    numerator: str
    denominator: str


@dataclass(frozen=True, slots=True)
class Deduction:
    """A scorecard item (DOMAIN.md §6) fed by a check's metric, with its default weight and cap.

    With a ``target`` it is a ratio item: ``points`` per percentage point the grid's ratio (its
    series pooled through :attr:`Check.ratios`) is below the target. Without one it is a count
    item: ``points`` per unit of the metric (its series summed). Either way at most ``cap``
    points. ``[assessment.NAME]`` overrides ``points``, ``cap`` and ``target`` by the item's name.
    """

    metric: str
    title: str
    """what the scorecard calls the figure, in Chinese: ``走访覆盖率``"""
    points: float
    cap: float
    target: float | None = None
    unit: str = ""
    """what a count item counts, in Chinese: ``户``, ``件``"""


@dataclass(frozen=True, slots=True)
class Grid:
    """One grid of the registry: the finest public unit."""

    grid_id: str
    name: str
    community: str
    street: str
    zone: str | None = None
    since: date | None = None
    """the day it came into service (``grids.since``, optional): nothing is owed before it"""


class GridSet(dict[str, "Grid"]):
    """The grids this instance watches (what :meth:`RunContext.registry` returns); ``elsewhere``
    holds the ids other shards watch, whose rows are skipped without being counted as bad."""

    elsewhere: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Latest:
    """What :meth:`Source.read_latest` aggregates, and the rules a row must surely pass to be
    aggregated rather than handed on: ``id`` neither NULL nor empty, ``grid`` a text value in
    ``grids``, ``column`` a valid time between ``since`` and ``until`` (naive local times, both
    included), ``by`` not NULL. A valid time is written as ``format`` says (the source's own
    ``formats``): for ``iso``, text that :func:`~gridwatch.rows.parse_ts` reads, to the same
    instant (``YYYY-MM-DD`` and ``HH:MM:SS`` with a ``T`` or a space between, fractional seconds,
    ``Z`` or an offset: a time with one compares as the instant it names); for ``epoch`` and
    ``epoch_ms``, a number; for a ``strptime`` pattern, text the pattern surely reads. A source
    vouches for a row only when it is sure; the rows it is not sure of it hands on, and the caller
    cleans them. A source that cannot vouch for a format returns None (the caller reads the rows).

    The optional fields ask for more, only of a source that lists them in
    :attr:`Source.latest_fields`: ``split`` groups by the pair (``by``, ``split``) — a group's key
    is then that pair, NULL a ``split`` value of its own — as when a grid's patrols are told
    apart by who made them; ``earliest`` appends each group's least ``column``, for a check that
    must know where the table's history starts."""

    by: str
    column: str
    id: str
    grid: str
    grids: Sequence[str]
    since: datetime
    until: datetime
    format: str = ISO
    split: str | None = None
    earliest: bool = False


@dataclass(frozen=True)
class Follow:
    """How a source follows one table between runs (:meth:`Source.follows`).

    ``column`` is what it follows the table by (``rowid``, the operator's cursor column), None
    when every run reads the table in full; ``edits`` says whether the rows read since the cursor
    include the rows changed since (a changed-since column), so nothing read before need be read
    again to see an edit; ``why`` is a stable code: ``appended`` (an increasing id or rowid),
    ``changed`` (a changed-since column), ``no_cursor`` (none configured), ``not_followable``."""

    column: str | None
    edits: bool
    why: str

    def as_dict(self, table: str) -> dict[str, Any]:
        """For the status API: ``read`` is ``appended``, ``changed`` or ``full``."""
        read = self.why if self.column is not None else "full"
        return {"table": table, "read": read, "cursor": self.column, "why": None if self.column else self.why}

    def sentence(self, table: str, where: str) -> str:
        """For ``check-config --connect``: how ``table`` of the source at ``where`` is read."""
        if self.column is not None:
            what = "appended and changed rows" if self.edits else "appended rows"
            return f"{where}: {table}: each run reads the {what} since the last, by {self.column}"
        why = (
            f"no cursor column configured ({where}.cursors.{table})"
            if self.why == "no_cursor"
            else "this type of source cannot say what changed"
        )
        return f"{where}: {table}: read in full on every run: {why}"


class Source(Generic[OptionsT_co]):
    """A named, read-only connection to where grid data lives.

    Methods are blocking; the core calls them from worker threads, never the event loop.
    """

    type: ClassVar[str]
    Options: ClassVar[builtins.type[_Options]] = TableOptions
    latest_fields: ClassVar[frozenset[str]] = frozenset()
    """The optional fields of :class:`Latest` (``split``, ``earliest``) that :meth:`read_latest`
    honours: a read that needs another is not asked of the source, its rows are read instead (a
    source written before a field existed would ignore it and fold wrongly)."""

    def __init__(self, name: str, options: OptionsT_co, env: Environment) -> None:
        self.name = name
        self.options: OptionsT_co = options
        self.env = env
        self.rows_read: Counter[str] = Counter()
        """table -> rows read for checks, aggregated ones included (gridwatch_source_rows_read_total)"""

    def query(
        self, sql: str, params: Mapping[str, Any] | None = None, *, deadline: float = math.inf
    ) -> list[dict[str, Any]]:
        """Run a parameterised read-only query; sources without SQL raise CheckError."""
        raise CheckError(f"source {self.name!r} ({self.type}) does not run SQL queries")

    def query_iter(
        self, sql: str, params: Mapping[str, Any] | None = None, *, deadline: float = math.inf
    ) -> Iterator[dict[str, Any]]:
        """:meth:`query`, streamed: a caller that stops early (a check's ``sample_limit``) stops
        the reading, so memory does not grow with the rows. Sources that cannot stream: ``query``."""
        return iter(self.query(sql, params, deadline=deadline))

    def read(self, table: str, columns: Sequence[str], *, deadline: float = math.inf) -> Iterable[dict[str, Any]]:
        """Rows of a standard-schema table, keyed by the standard column names.

        Sources map names through ``tables``/``columns`` options; a missing table or column
        raises CheckError naming both names, so the operator knows what to map.
        """
        raise CheckError(f"source {self.name!r} ({self.type}) cannot read tables")

    def read_since(
        self, table: str, columns: Sequence[str], after: Any = None, *, deadline: float = math.inf
    ) -> tuple[Iterable[dict[str, Any]], Any]:
        """The rows appended since the cursor ``after`` (None: every row), and the next cursor.

        Rows carry their key under :data:`ROW_KEY` for :meth:`read_keys`. A source that cannot
        tell what was appended returns every row and the cursor None, and the caller starts
        from scratch on every run; that is always correct, only slower. Raises
        :class:`Resync` when ``after`` no longer applies.
        """
        return self.read(table, columns, deadline=deadline), None

    def follows(self, table: str) -> Follow:
        """How :meth:`read_since` follows ``table``; by default it cannot (a full read every run)."""
        return Follow(None, False, "not_followable")

    def read_latest(
        self, table: str, columns: Sequence[str], after: Any, want: Latest, *, deadline: float = math.inf
    ) -> tuple[Iterable[tuple[Any, ...]], Iterable[dict[str, Any]], Any] | None:
        """:meth:`read_since`, aggregated by the source where it can vouch for the rows.

        Returns ``(groups, odd, cursor)``: ``groups`` holds ``(key, latest, rows)`` — the
        ``want.by`` value, the greatest ``want.column`` in a form the caller parses as it parses
        rows, to the latest instant (for ``iso``, local text; a number for ``epoch``) and the row
        count — for every
        key none of whose rows breaks a rule of ``want``; ``odd`` every row (as
        :meth:`read_since` gives it) of the other keys, and of a NULL key. None: the source
        cannot aggregate, and the caller reads the rows (the default). With ``want.split`` the
        key is the pair ``(by, split)`` (a key whose rows all pass is still one ``by`` value);
        with ``want.earliest`` each group ends with its least ``want.column`` as text."""
        return None

    def read_keys(
        self, table: str, columns: Sequence[str], keys: Sequence[Any], *, deadline: float = math.inf
    ) -> Iterable[dict[str, Any]]:
        """The current version of the rows with these :data:`ROW_KEY` values (for rows that
        change after they were appended, like an incident that gets closed)."""
        raise CheckError(f"source {self.name!r} ({self.type}) cannot re-read rows by key")

    def read_open(
        self, table: str, columns: Sequence[str], column: str, *, deadline: float = math.inf
    ) -> Iterable[dict[str, Any]]:
        """Rows whose ``column`` is NULL or empty — the open ones of a table whose rows close,
        like incidents: a case reopened long after it closed is found again this way."""
        return (r for r in self.read_since(table, columns, deadline=deadline)[0] if r.get(column) in (None, ""))

    def unique(self, table: str, column: str) -> bool:
        """True when the source guarantees ``column`` never repeats (a primary key or unique
        index), so a check need not remember every id it has seen to find duplicates."""
        return False

    def columns(self, table: str, *, deadline: float = math.inf) -> frozenset[str] | None:
        """The standard names of the columns the (mapped) table has: empty when there is no such
        table, None when the source cannot tell (rows of JSON objects). Checks ask it for the
        optional columns and tables of the standard schema; where the source cannot tell, an
        optional column counts as present only when the operator maps it in ``columns``."""
        return None

    def has(self, table: str, column: str | None = None, *, deadline: float = math.inf) -> bool:
        """Whether the table (and the column, if given) exists, as :meth:`columns` says."""
        have = self.columns(table, deadline=deadline)
        if have is None:
            return column is not None and column in self._columns().get(table, {})
        return bool(have) if column is None else column in have

    def standard_names(self, table: str, actual: Iterable[str]) -> frozenset[str]:
        """The standard names of a table's ``actual`` columns, through the ``columns`` mapping."""
        actual = set(actual)
        mapped = self._columns().get(table, {})
        sources = set(mapped.values())
        return frozenset({std for std, src in mapped.items() if src in actual} | (actual - sources - set(mapped)))

    def require(self, table: str, columns: Sequence[str], *, deadline: float = math.inf) -> None:
        """Raise CheckError unless the table and every one of ``columns`` exist in the source.

        A check's reads call it first: a mistyped name must fail the check, never be read as
        NULL or, as SQLite does with an unknown double-quoted name, as a constant string.
        :meth:`columns` is asked once per table (see :meth:`missing`)."""
        problems = self.missing(table, columns, deadline=deadline)
        if problems:
            more = f" (and {len(problems) - 1} more: {', '.join(k for k, _ in problems[1:])})" if problems[1:] else ""
            raise CheckError(problems[0][1] + more)

    def missing(self, table: str, columns: Sequence[str], *, deadline: float = math.inf) -> list[tuple[str, str]]:
        """What of the table and ``columns`` the source lacks, as ``(option key, sentence)``:
        the key to set (``tables.visits``, ``columns.visits.visited_at``) and what is wrong,
        naming the source, the table, the column and the columns the table does have. Empty
        when nothing is missing or the source cannot tell (:meth:`columns` is None).

        What :meth:`columns` said is kept per table until :meth:`forget_columns` or until
        :meth:`schema_token` changes (a replaced file); reloading builds a new source."""
        token, known = self.schema_token(), self._column_cache()
        cached = known.get(table)
        if cached is None or cached[0] != token:
            cached = known[table] = (token, self.columns(table, deadline=deadline))
        have = cached[1]
        if have is None:
            return []
        src_table = self.table_name(table)
        mapped_to = f" (mapped to {src_table!r})" if src_table != table else ""
        if not have:
            why = f"table {table!r}{mapped_to} not found in source {self.name}; map it with tables.{table}"
            return [(f"tables.{table}", why)]
        mapping = self._columns().get(table, {})
        actual = sorted({mapping.get(c, c) for c in have})
        shown = ", ".join(actual[:40]) + (f" and {len(actual) - 40} more" if len(actual) > 40 else "")
        out = []
        for std, src in self.column_map(table, list(dict.fromkeys(columns))).items():
            if std not in have:
                if src != std:
                    mapped = f" (mapped to {src!r}" + (f" in {src_table!r})" if mapped_to else ")")
                else:
                    mapped = f" (looked for in {src_table!r})" if mapped_to else ""
                out.append(
                    (
                        f"columns.{table}.{std}",
                        f"column {std!r} of table {table!r}{mapped} not found in source {self.name};"
                        f" the table has: {shown}; map it with columns.{table}.{std}",
                    )
                )
        return out

    def forget_columns(self, table: str | None = None) -> None:
        """Ask :meth:`columns` again on the next :meth:`require` (one table, or all): after a
        read failed, the schema may have changed under the source."""
        if table is None:
            self._column_cache().clear()
        else:
            self._column_cache().pop(table, None)

    def _column_cache(self) -> dict[str, tuple[Any, frozenset[str] | None]]:
        # table -> (schema token, what columns() said); kept even by a subclass that skips __init__
        known: dict[str, tuple[Any, frozenset[str] | None]] = vars(self).setdefault("_known", {})
        return known

    def schema_token(self) -> Any:
        """A value that changes when the source's schema may have been replaced wholesale (a
        SQLite file swapped for another), so :meth:`require` asks again; None by default."""
        return None

    def time_formats(self, table: str) -> dict[str, str]:
        """standard timestamp column -> its declared format (``formats``), for the table."""
        return self.options.formats.get(table, {}) if isinstance(self.options, TableOptions) else {}

    def code_map(self, table: str) -> dict[str, dict[str, str]]:
        """standard column -> {the source's value -> the standard value} (``codes``), for the table."""
        return self.options.codes.get(table, {}) if isinstance(self.options, TableOptions) else {}

    def table_name(self, table: str) -> str:
        return self._tables().get(table, table)

    def column_map(self, table: str, columns: Sequence[str]) -> dict[str, str]:
        """standard column -> the source's column, for the columns asked for."""
        mapped = self._columns().get(table, {})
        return {c: mapped.get(c, c) for c in columns}

    def _tables(self) -> dict[str, str]:
        return self.options.tables if isinstance(self.options, TableOptions) else {}

    def _columns(self) -> dict[str, dict[str, str]]:
        return self.options.columns if isinstance(self.options, TableOptions) else {}

    def ping(self) -> None:
        """Raise SourceUnavailable when the source cannot be reached."""

    def drain_rejected(self) -> dict[str, int]:
        """Records the source itself skipped since the last call (bytes that do not decode, a
        line that is not JSON), ``{reason: count}``; the core folds them into
        ``gridwatch_source_rows_rejected_total``. Sources that pass every row on: ``{}``."""
        return {}

    accepts_pushes: ClassVar[bool] = False
    """True for a source that takes rows pushed over ``POST /api/v1/ingest/{table}``; it then
    implements :meth:`authorized` and :meth:`ingest`."""

    def authorized(self, authorization_header: str | None) -> bool:
        """Whether a push with this ``Authorization`` header may write (sources that take pushes)."""
        return False

    def ingest(self, table: str, payload: object) -> int:
        """Store pushed rows (a JSON object or a list of them) of a standard table; return how
        many. All or nothing: a ValueError naming the row and key leaves the source unchanged."""
        raise CheckError(f"source {self.name!r} ({self.type}) does not take pushed rows")

    def close(self) -> None:
        """Release connections; called on reload and shutdown."""


class Check(Generic[OptionsT_co]):
    """A configured instance of a check type: reads a source, yields samples.

    ``run`` may be a plain method (run in a worker thread) or ``async def`` (run on the loop).
    """

    type: ClassVar[str]
    Options: ClassVar[builtins.type[_Options]] = _Options
    needs_source: ClassVar[bool] = True
    metrics: ClassVar[dict[str, str]] = {}
    """Help text per metric name this type produces."""
    titles: ClassVar[dict[str, Title]] = {}
    """What people call each metric, and how its values read (the status board's grid detail):
    the core names no check's metric, so a metric without a title is shown by its name."""
    ratios: ClassVar[dict[str, Ratio]] = {}
    """The numerator and denominator of each ratio metric, for the roll-ups that pool them."""
    deductions: ClassVar[dict[str, Deduction]] = {}
    """Scorecard items by name (``[assessment.NAME]``), in force while a check of the type runs."""
    display_names: ClassVar[dict[str, dict[str, tuple[str, str]]]] = {}
    """What people call the code values of this type's labels, ``{label: {code: (中文, English)}}``
    (``{"category": {"elderly_alone": ("独居老人", "elderly living alone")}}``): rule templates
    get them as ``{category_name}``, the board and robots show them, and the operator may rename
    them or name a platform's own codes under ``[display_names]``. Labels keep the codes."""

    def __init__(self, name: str, options: OptionsT_co, source: Source | None, env: Environment):
        self.name = name
        self.options: OptionsT_co = options
        self.source = source
        self.env = env

    @classmethod
    def produces(cls: builtins.type[Check[_O]], options: _O) -> set[str]:
        """Metric names an instance with these options produces (rules are checked against it).

        An override may take the type's own options: ``options: ReportsCheck.Options``."""
        return set(cls.metrics)

    @classmethod
    def reads(cls: builtins.type[Check[_O]], options: _O) -> dict[str, Sequence[str]]:
        """The standard tables and columns an instance with these options always reads from its
        source, ``{table: columns}`` (optional columns, read only when present, left out).

        ``gridwatch check-config --connect`` asks each source for them without running the
        check, so a missing or mistyped name is found before the daemon starts. Nothing by
        default: a check that runs its own SQL, say, reads what its query names."""
        return {}

    def metric_help(self) -> dict[str, str]:
        """Help text per metric this instance produces (override when names come from config)."""
        return dict(self.metrics)

    def display_name(self, label: str, code: str, lang: Lang = "zh") -> str:
        """What a person reads for ``code`` under ``label`` (for light reasons): the operator's
        name, else this type's (:attr:`display_names`), else the core's, else the code itself."""
        names = getattr(getattr(self, "env", None), "names", None)  # (a check built without __init__ too)
        found = names.get(label, code, lang) if isinstance(names, DisplayNames) else None
        if found is None:
            own = type(self).display_names.get(label, {}).get(code)
            found = None if own is None else own[0] if lang == "zh" else own[1]
        return found if found is not None else DisplayNames().name(label, code, lang)

    def run(self, ctx: RunContext) -> Iterable[Sample] | Iterator[Sample]:
        raise NotImplementedError

    def reasons(self, samples: Sequence[Sample]) -> Iterable[Reason]:
        """The light reasons this check's latest samples give (none by default).

        Called off the event loop whenever the samples change, with the whole list of the
        latest run; it must depend on nothing else, so the lights always match the samples.
        """
        return ()

    def tallies(self, samples: Sequence[Sample]) -> Iterable[Tally]:
        """The counts this check's latest samples add to the digests, per grid (none by default).

        Like :meth:`reasons`, a pure function of the latest run's whole sample list, called off
        the event loop; a grid whose count is 0 may be left out or given as 0.
        """
        return ()

    def close(self) -> None:
        """Release what the check holds; called on reload and shutdown."""


class NotifierOptions(Options):
    """Routing and pacing every notifier shares."""

    min_severity: Literal["warning", "critical"] = "warning"
    match: dict[str, str] = {}
    """only alerts whose labels have these values"""
    max_per_minute: int = Field(0, ge=0)
    """deliveries per minute at most (0: no limit); chat robots allow 20"""
    batch: int = Field(50, ge=1)
    """notifications handed to one ``send`` at most"""
    timeout: Duration = 10.0


NotifierOptionsT_co = TypeVar("NotifierOptionsT_co", bound=NotifierOptions, default=NotifierOptions, covariant=True)
"""The options model of a notifier type: what ``self.options`` is."""


class Notifier(Generic[NotifierOptionsT_co]):
    """Delivers alert notifications to a receiver (Alertmanager, a webhook, a chat robot).

    The core hands ``send`` a batch of alerts in Alertmanager's shape (``status``, ``labels``
    incl. ``severity``, ``annotations``, ``startsAt``, ``endsAt``, ``fingerprint``) from the
    durable outbox; raising means "not delivered, retry later". Never put a secret (a robot
    key, a token) into an exception message: it is logged and shown in the status API.
    """

    type: ClassVar[str]
    Options: ClassVar[builtins.type[NotifierOptions]] = NotifierOptions
    resend_interval: float | None = None
    """If set, firing alerts are re-sent this often (Alertmanager expects it)."""
    digest_format: ClassVar[Literal["markdown", "json"] | None] = None
    """What :meth:`send_digest` takes: a digest (通报) as Markdown (chat robots) or as the JSON
    document; None: this type takes no digests (a ``[[digests]]`` entry naming it is a config error)."""
    digest_bytes: ClassVar[int] = 4000
    """The most bytes a Markdown digest may hold: longer lists are cut with "…等 N 个网格"."""

    def __init__(self, name: str, options: NotifierOptionsT_co, env: Environment) -> None:
        self.name = name
        self.options: NotifierOptionsT_co = options
        self.env = env

    async def send(self, session: Any, alerts: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    async def resend(self, session: Any, firing: list[dict[str, Any]]) -> None:
        """Re-send the alerts still firing (only called when ``resend_interval`` is set)."""

    async def send_digest(self, session: Any, message: dict[str, Any]) -> None:
        """Deliver one digest rendered as :attr:`digest_format` says: ``{"title", "text"}`` for
        Markdown, the JSON document for JSON. Raising means "not delivered, retry later"; the
        same message is sent again, never a new one."""
        raise NotImplementedError(f"notifier type {self.type!r} takes no digests")
