"""A digest in words: Markdown for the chat robots, a JSON document for webhooks.

Every value that comes from data (a street's, community's or grid's name, a ranking's title) is
escaped before it goes into Markdown: control and format characters become spaces (no forged
line, no bidirectional trick) and the characters Markdown or the robots give a meaning to
(``[ ] ( ) < > * _ ` # ! | ~ \\ & @ : { }``) become their full-width forms, which read the same in
Chinese text and mean nothing to either robot. So a grid named ``[link](x)`` or ``<@all>`` shows
as ［link］（x） and ＜＠all＞, and mentions, links and headings come only from gridwatch.

A robot takes a message of limited size (WeCom 4096 bytes, DingTalk 20000): the lists are cut,
all to the same length, until the message fits, each ending with "…等 N 个网格" (or 街道).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from gridwatch.digests.content import Digest, Run
from gridwatch.digests.periods import KIND_ZH

_FULL_WIDTH = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in "[]()<>*_`#!|~\\&@:{}"})
NAME_MAX = 40  # characters of one name shown; a longer one is cut with …
TITLE_ZH = {"daily": "网格化管理日报", "weekly": "网格化管理周评", "monthly": "网格化管理月考"}


def esc(value: object, limit: int = NAME_MAX) -> str:
    """A value from data, safe inside a Markdown line of either robot (see the module docstring)."""
    text = "".join(
        " " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Zs") else c for c in str(value)
    ).translate(_FULL_WIDTH)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _count(value: float) -> int | float:
    """A count as JSON writes it: 3, not 3.0."""
    return int(value) if float(value).is_integer() else value


def _link(url: str) -> str:
    """The board's address as a Markdown link target: nothing in it can close the link early."""
    return quote(url.strip(), safe=":/?#@!$&'*+,;=%~-._[]")


def title(d: Digest) -> str:
    scope = "、".join(esc(s) for s in d.streets)
    return f"{TITLE_ZH[d.period.kind]}（{d.period.label()}{'，' + scope if scope else ''}）"


def _grid(r: Run) -> str:
    """Street, community and name, leaving out what the name already says (东街街道-丽景社区-第3网格)."""
    g = r.grid
    parts = [x for x in (g.street, g.community) if x.strip() and x not in g.name]
    return " ".join(esc(x) for x in (*parts, g.name))


def _run_words(r: Run) -> str:
    days = f"{r.days} 天{'以上' if r.capped else ''}"
    if r.yellow == 0:
        return f"连续 {days}红灯"
    if r.red == 0:
        return f"连续 {days}黄灯"
    return f"连续 {days}（红灯 {r.red} 天，黄灯 {r.yellow} 天）"


def _lines(d: Digest, limit: int | None) -> list[str]:
    """The message, each list at most ``limit`` lines (None: whole)."""
    cut = (lambda rows: rows) if limit is None else (lambda rows: rows[:limit])
    one_day = d.period.days == 1
    unit = "个" if one_day else "天次"
    made = d.made_at
    out = [f"### {title(d)}"]
    scope = f"共 {d.grids} 个网格" + ("" if one_day else f"，{d.period.days} 天")
    out.append(f"> {scope}")
    n = 0

    def heading(text: str) -> None:
        nonlocal n
        n += 1
        out.extend(["", f"**{'一二三四五六七八九十'[min(n, 10) - 1]}、{text}**"])

    def tail(hidden: int, noun: str) -> None:
        if hidden > 0:
            out.append(f"…等 {hidden} 个{noun}")

    heading(f"各街道亮灯情况（{'网格数' if one_day else '网格·天次'}）")
    rows = cut(list(d.lights))
    out += [
        f"- {esc(s.street) or '未分街道'}：红灯 {s.red} {unit}，黄灯 {s.yellow} {unit}，绿灯 {s.green} {unit}"
        for s in rows
    ]
    if not d.lights:
        out.append("- 暂无亮灯记录")
    tail(len(d.lights) - len(rows), "街道")

    end = d.period.end
    heading(f"连续亮红灯、黄灯最久的网格（截至{end.month}月{end.day}日）")
    runs = cut(list(d.runs))
    out += [f"{i}. {_grid(r)}：{_run_words(r)}" for i, r in enumerate(runs, 1)]
    if not d.runs:
        out.append("- 无")
    tail(d.runs_total - len(runs), "网格")

    for section in d.sections:
        heading(f"{esc(section.title)}（截至{made.month}月{made.day}日 {made:%H:%M}）")
        rows2 = cut(list(section.streets))
        for street, values in rows2:
            counts = "，".join(
                f"{esc(c.title)} {_num(v)} {esc(c.unit)}".rstrip() for c, v in zip(section.columns, values, strict=True)
            )
            out.append(f"- {esc(street) or '未分街道'}：{counts}")
        if not section.streets:
            out.append("- 无")
        tail(len(section.streets) - len(rows2), "街道")

    for ranking in d.rankings:
        heading(esc(ranking.title))
        entries = cut(list(ranking.entries))
        out += [f"{e.rank}. {esc(e.name)} {_num(e.score)} 分" for e in entries]
        tail(len(ranking.entries) - len(entries), "网格" if any(e.grid for e in ranking.entries) else "街道")

    if d.notes:
        out += ["", *(f"> {esc(note, 200)}" for note in d.notes)]
    if d.url:
        out += ["", f"[查看网格监测看板]({_link(d.url)})"]
    return out


def _longest(d: Digest) -> int:
    return max(
        [len(d.lights), len(d.runs), *(len(s.streets) for s in d.sections), *(len(r.entries) for r in d.rankings)]
    )


def markdown(d: Digest, max_bytes: int | None = None) -> dict[str, str]:
    """``{"title", "text"}``: the whole digest, or within ``max_bytes`` (UTF-8) with its lists cut."""
    text = "\n".join(_lines(d, None))
    if max_bytes is not None and len(text.encode()) > max_bytes:
        lo, hi = 0, _longest(d)  # the longest list length that fits: lo always fits (or nothing does)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len("\n".join(_lines(d, mid)).encode()) <= max_bytes:
                lo = mid
            else:
                hi = mid - 1
        lines = _lines(d, lo)
        while len("\n".join(lines).encode()) > max_bytes and len(lines) > 1:
            lines.pop()  # only a limit smaller than any digest's headings gets here
        text = "\n".join(lines)
    return {"title": title(d), "text": text}


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def document(d: Digest) -> dict[str, Any]:
    """The JSON a webhook receives (docs/configuration.md): codes and raw values, not words only."""
    p = d.period
    return {
        "type": "gridwatch.digest",
        "version": 1,
        "id": f"{d.name}/{p.key}",
        "digest": d.name,
        "kind": p.kind,
        "kind_zh": KIND_ZH[p.kind],
        "title": title(d),
        "period": {"key": p.key, "start": p.start.isoformat(), "end": p.end.isoformat(), "days": p.days},
        "due_at": _iso(p.due),
        "made_at": _iso(d.made_at),
        "streets": list(d.streets),
        "grids": d.grids,
        "lights": [{"street": s.street, "red": s.red, "yellow": s.yellow, "green": s.green} for s in d.lights],
        "lit_longest": {
            "total": d.runs_total,
            "grids": [
                {
                    "grid": r.grid.grid_id,
                    "name": r.grid.name,
                    "community": r.grid.community,
                    "street": r.grid.street,
                    "days": r.days,
                    "red": r.red,
                    "yellow": r.yellow,
                    "more": r.capped,
                }
                for r in d.runs
            ],
        },
        "sections": [
            {
                "title": s.title,
                "columns": [{"code": c.code, "title": c.title, "unit": c.unit} for c in s.columns],
                "streets": [
                    {"street": street, "counts": {c.code: _count(v) for c, v in zip(s.columns, values, strict=True)}}
                    for street, values in s.streets
                ],
            }
            for s in d.sections
        ],
        "rankings": [
            {
                "title": r.title,
                "entries": [
                    {"rank": e.rank, "name": e.name, "score": e.score, "street": e.street, "grid": e.grid}
                    for e in r.entries
                ],
            }
            for r in d.rankings
        ],
        "notes": list(d.notes),
        "url": d.url,
        "markdown": "\n".join(_lines(d, None)),
    }


def message(d: Digest, fmt: str, max_bytes: int) -> dict[str, Any]:
    """What a notifier whose ``digest_format`` is ``fmt`` gets."""
    return document(d) if fmt == "json" else markdown(d, max_bytes)


__all__: Sequence[str] = ("document", "esc", "markdown", "message", "title")
