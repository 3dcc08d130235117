"""The ``csv`` and ``jsonl`` sources: a directory of exported files, one file per table.

Table ``T`` is read from ``T.csv`` (or ``T.jsonl``) in the ``path`` directory; ``tables``
maps a standard table to another file name (``tables.visits = "visit_log"`` reads
``visit_log.csv``; a name with an extension is taken as it is). A file is parsed again
only when it changed (modification time, size, inode); otherwise the rows parsed last
time are served.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from gridwatch.api import CheckError, Source, SourceUnavailable, TableOptions
from gridwatch.hookspecs import hookimpl

# reasons for records skipped before they become rows (see RejectCounter)
BAD_ENCODING = "bad_encoding"
WRONG_FIELD_COUNT = "wrong_field_count"
BAD_CSV = "bad_csv"
BAD_JSON = "bad_json"
NOT_OBJECT = "not_object"


class RejectCounter:
    """For sources that must skip unreadable records of otherwise good data.

    Bad *rows* (an unparseable timestamp, an unknown grid) are passed through as they are:
    the checks' row cleaning counts and drops them. Bad *records* that cannot become a row
    at all - a CSV line with the wrong number of fields, bytes that do not decode, a JSONL
    line or an HTTP body that is not JSON, a list item that is not an object - are skipped
    and counted here by reason, so one bad line never loses the file.

    Reasons: ``bad_encoding`` (a line whose bytes do not decode in ``encoding``),
    ``wrong_field_count`` and ``bad_csv`` (a CSV record the header does not fit, or the csv
    module cannot parse), ``bad_json`` (a JSONL line, or an HTTP body, that is not JSON or is
    nested too deep to parse),
    ``not_object`` (a JSON value where a row object belongs).

    ``drain_rejected()`` returns ``{reason: count}`` accumulated since the previous call and
    resets it (:meth:`gridwatch.api.Source.drain_rejected`); the core folds it into
    ``gridwatch_source_rows_rejected_total{source,reason}``.
    Thread-safe: reads run on worker threads while the core drains from another.
    """

    def __init__(self) -> None:
        self._rejected: Counter[str] = Counter()
        self._rejected_lock = threading.Lock()

    def count_rejected(self, counts: Counter[str] | dict[str, int]) -> None:
        with self._rejected_lock:
            self._rejected.update(counts)

    def drain_rejected(self) -> dict[str, int]:
        with self._rejected_lock:
            drained = {reason: n for reason, n in self._rejected.items() if n}
            self._rejected.clear()
        return drained


_ParseResult = tuple[list[str] | None, list[dict[str, Any]], Counter[str]]
"""(the columns if the format declares them, the rows, the skipped records by reason)"""


@dataclass
class _Parsed:
    """One parse of one file: what it held and what had to be skipped."""

    signature: tuple[int, int, int]
    columns: list[str] | None  # the CSV header; None for JSONL (keys vary per line)
    rows: list[dict[str, Any]]
    rejected: Counter[str] = field(default_factory=Counter)


class FileSource(RejectCounter, Source["FileSource.Options"]):
    """Shared by ``csv`` and ``jsonl``: file lookup, change detection and the row cache.

    Skipped records are counted on every read that leaves them out (like the checks' bad-row
    counts), so the rejected rate stays up for as long as the bad line stays in the file.
    """

    extension: ClassVar[str]

    class Options(TableOptions):
        path: str
        """the directory holding one file per table"""
        encoding: str = "utf-8"

        @field_validator("encoding")
        @classmethod
        def _known_encoding(cls, v: str) -> str:
            try:
                codecs.lookup(v)
            except LookupError:
                raise ValueError(f"unknown encoding {v!r}") from None
            return v

    def __init__(self, name: str, options: Any, env: Any) -> None:
        Source.__init__(self, name, options, env)
        RejectCounter.__init__(self)
        self.directory = env.resolve(options.path)
        self.parses = 0  # how many times a file was actually parsed (the cache's misses)
        self._cache: dict[Path, _Parsed] = {}
        self._lock = threading.Lock()

    # -- files ---------------------------------------------------------------------------------
    def file_for(self, table: str) -> Path:
        name = self.table_name(table)
        if not Path(name).suffix:
            name += self.extension
        return self.directory / name

    def ping(self) -> None:
        if not self.directory.is_dir():
            raise SourceUnavailable(f"directory {self.directory.name!r} does not exist")

    def _load(self, table: str, deadline: float) -> _Parsed:
        self.ping()
        path = self.file_for(table)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise CheckError(
                f"table {table!r} not found in source {self.name}: there is no file "
                f"{path.name} in {self.directory.name}; map it with tables.{table}"
            ) from None
        except OSError as exc:
            raise SourceUnavailable(f"{path.name}: {exc.strerror or exc}") from None
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            cached = self._cache.get(path)
            if cached is not None and cached.signature == signature:
                return cached
            try:
                data = path.read_bytes()
                after = path.stat()
            except OSError as exc:
                raise SourceUnavailable(f"{path.name}: {exc.strerror or exc}") from None
            columns, rows, rejected = self.parse(data, deadline)
            self.parses += 1
            parsed = _Parsed(signature, columns, rows, rejected)
            if (after.st_mtime_ns, after.st_size, after.st_ino) == signature:
                self._cache[path] = parsed  # a file still being written is parsed again next time
            else:
                self._cache.pop(path, None)
            return parsed

    def _lines(self, data: bytes, rejected: Counter[str], deadline: float) -> Iterator[str]:
        """Decoded lines; a line whose bytes do not decode is skipped and counted."""
        if data.startswith(codecs.BOM_UTF8) and codecs.lookup(self.options.encoding).name in (
            "utf-8",
            "utf-8-sig",
        ):
            data = data[len(codecs.BOM_UTF8) :]
        for i, raw in enumerate(data.splitlines(keepends=True)):
            if i % 10_000 == 9_999 and time.monotonic() > deadline:
                raise TimeoutError(f"reading source {self.name} exceeded the check's timeout")
            try:
                yield raw.decode(self.options.encoding)
            except UnicodeDecodeError:
                rejected[BAD_ENCODING] += 1

    def parse(self, data: bytes, deadline: float) -> _ParseResult:
        raise NotImplementedError

    # -- reading -------------------------------------------------------------------------------
    def columns(self, table: str, *, deadline: float = math.inf) -> frozenset[str] | None:
        """A CSV file's header names its columns; JSON lines cannot tell. A missing directory
        is the source down (an unmounted share), a missing file a table that is not there."""
        self.ping()
        if not self.file_for(table).is_file():
            return frozenset()
        parsed = self._load(table, deadline)
        return self.standard_names(table, parsed.columns) if parsed.columns else None

    def read(self, table: str, columns: Sequence[str], *, deadline: float = math.inf) -> list[dict[str, Any]]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading source {self.name} exceeded the check's timeout")
        parsed = self._load(table, deadline)
        colmap = self.column_map(table, columns)
        if parsed.columns:
            have = set(parsed.columns)
            for std, src in colmap.items():
                if src not in have:
                    raise CheckError(
                        f"column {std!r} of table {table!r} not found in source {self.name} "
                        f"({self.file_for(table).name} has {', '.join(parsed.columns)}): "
                        f"map it with columns.{table}.{std}"
                    )
        if parsed.rejected:
            self.count_rejected(parsed.rejected)
        return [{std: row.get(src) for std, src in colmap.items()} for row in parsed.rows]


class CsvSource(FileSource):
    """CSV files with a header row; an empty field is NULL, every other value is text."""

    type = "csv"
    extension = ".csv"

    class Options(FileSource.Options):
        delimiter: str = Field(",", min_length=1, max_length=1)

    options: CsvSource.Options

    def parse(self, data: bytes, deadline: float) -> _ParseResult:
        rejected: Counter[str] = Counter()
        reader = csv.reader(self._lines(data, rejected, deadline), delimiter=self.options.delimiter)
        header: list[str] | None = None
        rows: list[dict[str, Any]] = []
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error:
                rejected[BAD_CSV] += 1
                continue
            if not record or record == [""]:
                continue  # a blank line
            if header is None:
                header = [h.strip() for h in record]
                continue
            if len(record) != len(header):
                rejected[WRONG_FIELD_COUNT] += 1
                continue
            rows.append({h: (v if v != "" else None) for h, v in zip(header, record, strict=True)})
        return header or [], rows, rejected


class JsonlSource(FileSource):
    """JSON Lines: one object per line; a key a line leaves out is NULL in that row."""

    type = "jsonl"
    extension = ".jsonl"

    def parse(self, data: bytes, deadline: float) -> _ParseResult:
        rejected: Counter[str] = Counter()
        rows: list[dict[str, Any]] = []
        for line in self._lines(data, rejected, deadline):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError):  # not JSON, or nested too deep to parse
                rejected[BAD_JSON] += 1
                continue
            if not isinstance(obj, dict):
                rejected[NOT_OBJECT] += 1
                continue
            rows.append(obj)
        return None, rows, rejected


@hookimpl
def register_source_types() -> list[type[Source]]:
    return [CsvSource, JsonlSource]
