"""The assessment as a table for the assessment office: CSV that Excel opens, and an XLSX workbook.

One table, Chinese column headers, a row per grid: its light days, score, ranks, the points each
scorecard item took off and why. The CSV is UTF-8 with a byte-order mark (without one, Excel
reads it in the local ANSI code page and the Chinese turns to mojibake) and CRLF line ends.
"""

from __future__ import annotations

import csv
import io
import urllib.parse
from typing import Any

CSV_TYPE = "text/csv"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

COLUMNS = (
    ("grid", "网格编号"),
    ("name", "网格名称"),
    ("street", "街道"),
    ("community", "社区"),
    ("since", "启用日期"),
    ("green", "绿灯天数"),
    ("yellow", "黄灯天数"),
    ("red", "红灯天数"),
    ("unrecorded", "未记录天数"),
    ("score", "得分"),
    ("street_rank", "街道排名"),
    ("district_rank", "全区排名"),
)
WHY = "扣分说明"


def table(assessment: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The header and the rows: the fixed columns, one "扣分：…" column per scorecard item (0 where
    it took nothing), then the reasons joined."""
    items = assessment["items"]
    header = [title for _, title in COLUMNS] + [f"扣分：{i['title']}" for i in items] + [WHY]
    rows = []
    for g in assessment["grids"]:
        flat = {**g, **g["days"], "street_rank": g["rank"]["street"], "district_rank": g["rank"]["district"]}
        taken = {d["indicator"]: d["points"] for d in g["deductions"]}
        rows.append(
            [_cell(flat[key]) for key, _ in COLUMNS]
            + [_cell(taken.get(i["indicator"], 0)) for i in items]
            + ["；".join(d["why"] for d in g["deductions"])]
        )
    return header, rows


def _cell(value: Any) -> Any:
    """A whole number as one (97, not 97.0), so that a spreadsheet shows what the API means."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``) is
    quoted with an apostrophe: grid names come from the platform, not from gridwatch."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def as_csv(assessment: dict[str, Any]) -> bytes:
    header, rows = table(assessment)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([_safe(v) for v in row] for row in rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def as_xlsx(assessment: dict[str, Any]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    header, rows = table(assessment)
    book = Workbook()
    sheet = book.active
    sheet.title = f"考核 {assessment['period']}"[:31]  # Excel's limit for a sheet name
    sheet.append(header)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append([_safe(v) for v in row])
    sheet.freeze_panes = "C2"  # the grid's id and name stay in view
    for i, title in enumerate(header, 1):
        sheet.column_dimensions[sheet.cell(1, i).column_letter].width = 60 if title == WHY else max(10, 2 * len(title))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def disposition(period: str, extension: str) -> str:
    """``attachment`` with a plain ASCII name for old clients and the Chinese one (RFC 6266)."""
    plain = f"gridwatch-assessment-{period}.{extension}"
    named = urllib.parse.quote(f"网格考核-{period}.{extension}")
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{named}"
