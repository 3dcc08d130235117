"""The bench's one table: each figure with its target and whether it is met, as Markdown."""

from __future__ import annotations

import math
import os
import platform
import sqlite3
from dataclasses import dataclass
from pathlib import Path

YES, NO, NA, NONE = "yes", "**NO**", "n/a", "—"


@dataclass
class Row:
    """One figure: its value on each database (in the table's order), its target, and whether
    each database meets it (one verdict when they agree)."""

    figure: str
    values: list[str]
    target: str = NONE
    met: str = NONE


def met(verdicts: dict[str, str]) -> str:
    """One verdict when every database has it, else each database's: ``SQLite yes, PostgreSQL **NO**``."""
    if len(set(verdicts.values())) <= 1:
        return next(iter(verdicts.values()), NONE)
    return ", ".join(f"{db} {v}" for db, v in verdicts.items())


def seconds(x: float | None) -> str:
    if x is None or math.isnan(x):
        return NA
    if x < 1.0:
        return f"{x * 1000:.1f} ms" if x < 0.1 else f"{x * 1000:.0f} ms"
    return f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


def count(n: float | None) -> str:
    return NA if n is None else f"{n:,.0f}"


def ratio(x: float | None) -> str:
    if x is None or math.isnan(x):
        return NA
    return f"{x:.3g}×"


def percent(x: float | None) -> str:
    return NA if x is None or math.isnan(x) else f"{x * 100:.3g} %"


def megabytes(kb: int | None) -> str:
    return NA if kb is None else f"{kb / 1024:,.0f} MB"


def size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def verdict(ok: bool | None) -> str:
    return NA if ok is None else (YES if ok else NO)


def machine(extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """What the figures were measured on, found at run time (no host names, no paths)."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return [
        ("CPU", f"{os.cpu_count()} cores" + (f", {model}" if model else "")),
        ("RAM", ram or NA),
        ("OS", f"{platform.system()} {'.'.join(platform.release().split('.')[:2])}"),
        ("Python", platform.python_version()),
        ("SQLite", sqlite3.sqlite_version),
        *(extra or []),
    ]


def table(rows: list[Row], databases: list[str]) -> str:
    cells = [("figure", *databases, "target", "met"), *((r.figure, *r.values, r.target, r.met) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |"]
    lines.append("| " + " | ".join("-" * w for w in widths) + " |")
    for c in cells[1:]:
        lines.append("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)) + " |")
    return "\n".join(lines)


def document(title: str, facts: list[tuple[str, str]], rows: list[Row], databases: list[str], notes: list[str]) -> str:
    """The results file: what ran where, the table (a value column per database), and the
    notes the table's cells refer to."""
    out = [f"## {title}", ""]
    out += [f"- {k}: {v}" for k, v in facts]
    out += ["", table(rows, databases), ""]
    if notes:
        out += [f"- {n}" for n in notes]
        out.append("")
    return "\n".join(out)
