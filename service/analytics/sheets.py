"""Tables for spreadsheets: every report, log and dashboard download as CSV or as an Excel workbook.

CSV is what scripts read; a workbook is what an analyst opens. Excel opens a CSV in the
system's code page and list separator (in Russia cp1251 and «;»): Cyrillic comes out as
«РљСѓРїРёС‚СЊ», every row in one column, and a lift «1.05» as the first of May. A workbook
(Office Open XML, written here with the standard library) carries its text as Unicode, its
numbers as numbers and its times as times, in any locale, and never runs a cell as a formula.
"""

from __future__ import annotations

import csv
import datetime
import io
import math
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from starlette.responses import Response

from service.analytics import one_thread

Value = str | int | float | datetime.datetime | None  # a cell's; a time shows as its zone's clocks do
FORMATS = {"csv": "text/csv; charset=utf-8",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
MOST_TEXT = 32_767  # characters Excel keeps in a cell
WIDEST = 60  # characters a column is widened to, at most
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # a phone number as the call log writes it: no formula
# Where a spreadsheet may start a cell inside a text, before a formula character: Excel opens a
# CSV at its list separator, in Russia «;» rather than the comma, and a pasted table at tabs and
# line breaks (a quote there opens quoted text, which the cell then starts with). Quoting the
# field would not keep it one cell: Excel heeds a quote only at the start of a cell, so a field
# past the first of its line is cut at its «;» all the same, and a standard CSV writes a «;=» in
# a field as it is. So the apostrophe goes after the «;».
_CELL_IN_TEXT = re.compile(r'(?<=[;\t\r\n])(?="*[=+\-@\t\r])')
ROWS_AT_ONCE = 500  # rows of a workbook made into one string and written at a time
_EPOCH = datetime.datetime(1899, 12, 30)  # day 0 of a workbook's dates
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")  # no XML 1.0 document holds these


@dataclass(frozen=True)
class Sheet:
    """A table to download: `name` names its file (and the workbook's sheet), with the days it
    covers (`period`)."""

    name: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Value]]


async def download(make: Callable[[], Sheet], form: str, headers: dict[str, str] | None = None) -> Response:
    """The sheet `make` makes, as a file to save in `form` (one of `FORMATS`), both made in a
    thread: a long table takes longer to lay out and write than a request may hold the loop
    (docs/PERFORMANCE.md, "Downloads")."""
    def written() -> tuple[str, str | bytes]:
        sheet = make()
        return sheet.name, (xlsx if form == "xlsx" else csv_text)(sheet)

    name, body = await one_thread.run(written)
    return Response(body, media_type=FORMATS[form], headers={
        "content-disposition": f'attachment; filename="{name}.{form}"', **(headers or {})})


def period(first: str, last: str) -> str:
    """The days a file covers, for its name: two reports of other weeks are not `report (1).xlsx`."""
    return first if first == last else f"{first}_{last}"


def requested(path: str) -> str | None:
    """The form a download's address asks for (`/v1/reports/demo.xlsx`), or None (JSON)."""
    return next((form for form in FORMATS if path.endswith(f".{form}")), None)


def spreadsheet_text(text: str) -> str:
    """Text as a spreadsheet shows it, never as a formula it runs (OWASP's CSV injection advice:
    a cell that starts with = + - @ tab or carriage return gets a leading apostrophe), nor any
    cell a spreadsheet may cut it into (`_CELL_IN_TEXT`: the apostrophe comes after the «;», tab
    or line break). A phone number in E.164 (`+74951200001`) runs nothing and stays as written,
    for the scripts a CSV is for."""
    text = _CELL_IN_TEXT.sub("'", text)
    if text.startswith(("=", "+", "-", "@", "\t", "\r")) and not _E164.fullmatch(text):
        return "'" + text
    return text


def csv_text(sheet: Sheet) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(sheet.columns)
    writer.writerows([csv_cell(value) for value in row] for row in sheet.rows)
    return out.getvalue()


def csv_cell(value: Value) -> str | int:
    """A value as a CSV cell: text never as a formula (`spreadsheet_text`)."""
    if isinstance(value, str):
        return spreadsheet_text(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return "" if value is None else value


def xlsx(sheet: Sheet) -> bytes:
    """The sheet as an Excel workbook: the header row in bold, frozen and with its filter
    buttons, columns as wide as their text (up to `WIDEST`), text as inline strings, which
    Excel never reads as formulas, yes and no as Excel's TRUE and FALSE.
    The rows go into the archive `ROWS_AT_ONCE` at a time: a big log is never one string, nor
    one call that holds the interpreter while the event loop waits."""
    columns = "".join(f'<col min="{n}" max="{n}" width="{width + 2}" customWidth="1"/>'
                      for n, width in enumerate(_widths(sheet), start=1))
    name, last, height = _sheet_name(sheet.name), _column(len(sheet.columns) - 1), len(sheet.rows) + 1
    size = f"A1:{last}{height}"
    # The filter's range is named too, as Excel itself writes a filtered sheet.
    filtered = escape("'" + name.replace("'", "''") + f"'!$A$1:${last}${height}")
    workbook = (f'{_XML}<workbook xmlns="{_MAIN}" xmlns:r="{_RELATIONS}"><sheets>'
                f'<sheet name="{escape(name)}" sheetId="1" r:id="rId1"/></sheets><definedNames>'
                f'<definedName name="_xlnm._FilterDatabase" localSheetId="0" hidden="1">{filtered}</definedName>'
                '</definedNames></workbook>')
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as book:
        for path, text in (("[Content_Types].xml", _CONTENT_TYPES), ("_rels/.rels", _PACKAGE),
                           ("xl/workbook.xml", workbook), ("xl/_rels/workbook.xml.rels", _PARTS),
                           ("xl/styles.xml", _STYLES)):
            book.writestr(path, text)
        with book.open("xl/worksheets/sheet1.xml", "w") as part:
            # Its size first, as Excel writes it: readers that stream a sheet know its rows from it.
            part.write(f'{_XML}<worksheet xmlns="{_MAIN}"><dimension ref="{size}"/>'
                       '<sheetViews><sheetView workbookViewId="0">'
                       '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/></sheetView>'
                       f'</sheetViews><cols>{columns}</cols><sheetData>{_row(1, sheet.columns, style=1)}'.encode())
            for first in range(0, len(sheet.rows), ROWS_AT_ONCE):
                rows = sheet.rows[first:first + ROWS_AT_ONCE]
                part.write("".join(_row(number, row) for number, row in enumerate(rows, start=first + 2)).encode())
            part.write(f'</sheetData><autoFilter ref="{size}"/></worksheet>'.encode())
    return out.getvalue()


def _widths(sheet: Sheet) -> list[int]:
    """Each column's width in characters: its widest value as the cell shows it, up to `WIDEST`."""
    widths = [min(len(name), WIDEST) for name in sheet.columns]
    for row in sheet.rows:
        for index, value in enumerate(row):
            if isinstance(value, bool):
                shown = 5
            elif isinstance(value, datetime.datetime):
                shown = 19
            elif isinstance(value, int | float):
                shown = len(f"{value:.6g}")
            else:
                shown = len(value or "")
            if shown > widths[index]:
                widths[index] = min(shown, WIDEST)
    return widths


def _row(number: int, values: Sequence[Value], style: int = 0) -> str:
    cells = []
    for index, value in enumerate(values):
        place = f"{_column(index)}{number}"
        if isinstance(value, bool):  # TRUE or FALSE, as Excel's own filters and formulas read them
            cells.append(f'<c r="{place}" t="b"{_style(style)}><v>{value:d}</v></c>')
        elif isinstance(value, datetime.datetime):
            days = (value.replace(tzinfo=None) - _EPOCH) / datetime.timedelta(days=1)
            cells.append(f'<c r="{place}" s="2"><v>{days!r}</v></c>')
        elif isinstance(value, int | float) and math.isfinite(value):
            cells.append(f'<c r="{place}"{_style(style)}><v>{value!r}</v></c>')
        elif isinstance(value, str) and value:
            text = _NOT_XML.sub("", value)[:MOST_TEXT]
            cells.append(f'<c r="{place}" t="inlineStr"{_style(style)}><is><t xml:space="preserve">'
                         f'{escape(text)}</t></is></c>')
    return f'<row r="{number}">{"".join(cells)}</row>'


def _style(style: int) -> str:
    return f' s="{style}"' if style else ""


def _column(index: int) -> str:
    """The column's letters: 0 is A, 25 Z, 26 AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _sheet_name(name: str) -> str:
    """A name Excel takes for a sheet: at most 31 characters, none of []:*?/\\."""
    return re.sub(r"[\[\]:*?/\\]", "-", _NOT_XML.sub("", name))[:31] or "Sheet1"


_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELATIONS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_CONTENT_TYPES = (
    f'{_XML}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>')
_PACKAGE = (f'{_XML}<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{_RELATIONS}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
_PARTS = (f'{_XML}<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
          f'<Relationship Id="rId1" Type="{_RELATIONS}/worksheet" Target="worksheets/sheet1.xml"/>'
          f'<Relationship Id="rId2" Type="{_RELATIONS}/styles" Target="styles.xml"/></Relationships>')
# Styles: 0 plain, 1 the header (bold), 2 a time (yyyy-mm-dd hh:mm:ss).
_STYLES = (
    f'{_XML}<styleSheet xmlns="{_MAIN}">'
    '<numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm:ss"/></numFmts>'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill>'
    '</fills><borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>')
