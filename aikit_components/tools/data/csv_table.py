"""CSV parsing into a table, and the operations the CSV tools run on it: profile, filter,
convert, normalize, validate."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ...codec import json_type_name
from ...errors import InvalidArgument
from ..base import ToolContext
from .common import offload, read_text_input
from .json_tools import parse_json_text

_DELIMITER_NAMES = {"comma": ",", "tab": "\t", "\\t": "\t", "semicolon": ";", "pipe": "|", "space": " "}


def _delimiter(text: str, delimiter: str) -> str:
    if delimiter.lower() == "auto":
        sample = "\n".join(text[:32768].splitlines()[:50])
        try:
            return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            return ","
    chosen = _DELIMITER_NAMES.get(delimiter.lower(), delimiter)
    if len(chosen) != 1 or chosen in "\"\r\n":
        raise InvalidArgument(
            f"delimiter must be one character (or 'auto', 'comma', 'tab', 'semicolon', 'pipe'), got {delimiter!r}",
            details={"delimiter": delimiter},
        )
    return chosen


@dataclass
class Table:
    """A parsed CSV: column names, rows of raw cells, their source lines, and what was wrong in the file."""

    columns: list[str]
    rows: list[list[str]]
    lines: list[int]
    delimiter: str
    ragged: list[dict[str, int]] = field(default_factory=list)
    header_problems: list[str] = field(default_factory=list)
    blank_lines: int = 0  # empty lines between the rows, which the CSV reader skips


def _header(names: list[str]) -> tuple[list[str], list[str]]:
    columns: list[str] = []
    problems: list[str] = []
    seen: Counter[str] = Counter()
    for i, raw in enumerate(names):
        name = raw.strip()
        if not name:
            name = f"column{i + 1}"
            problems.append(f"column {i + 1} has no name (called {name!r})")
        seen[name] += 1
        if seen[name] > 1:
            renamed = f"{name}_{seen[name]}"
            problems.append(f"column name {name!r} is repeated (the copy is called {renamed!r})")
            name = renamed
        columns.append(name)
    return columns, problems


def _parse_csv(text: str, source: str, delimiter: str, header: bool) -> Table:
    delim = _delimiter(text, delimiter)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim, strict=True)
    raw_rows: list[list[str]] = []
    lines: list[int] = []
    blank_lines = 0
    try:
        for row in reader:
            if row:
                raw_rows.append(row)
                lines.append(reader.line_num)
            else:
                blank_lines += 1
    except csv.Error as exc:
        raise InvalidArgument(
            f"invalid CSV in {source} at line {reader.line_num}: {exc}; check the quoting on that line "
            "(a quote inside a quoted field is written as two quotes)",
            details={"source": source, "line": reader.line_num, "reason": str(exc)},
        ) from None
    problems: list[str] = []
    if header:
        if raw_rows:
            columns, problems = _header(raw_rows[0])
            raw_rows, lines = raw_rows[1:], lines[1:]
        else:
            columns = []
    else:
        width = max((len(r) for r in raw_rows), default=0)
        columns = [f"column{i + 1}" for i in range(width)]
    table = Table(columns, [], lines, delim, header_problems=problems, blank_lines=blank_lines)
    width = len(columns)
    for row, line in zip(raw_rows, lines):
        if len(row) != width:
            table.ragged.append({"line": line, "fields": len(row), "expected": width})
            row = (row + [""] * width)[:width]
        table.rows.append(row)
    return table


async def load_table(ctx: ToolContext, text: str | None, path: str | None, delimiter: str, header: bool) -> Table:
    """Parse CSV given inline or as a file (off the loop when big)."""
    content, source = await read_text_input(ctx, text, path, "CSV")
    return await offload(lambda: _parse_csv(content, source, delimiter, header), len(content))


_INT = re.compile(r"[+-]?(?:0|[1-9]\d{0,300})")
_FLOAT = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+(?=[eE]))(?:[eE][+-]?\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}.*")


def typed_value(raw: str) -> Any:
    """The value a CSV cell stands for: None (empty), int, float, bool or the string itself.
    Integers with leading zeros (zip codes, ids) stay strings."""
    s = raw.strip()
    if not s:
        return None
    first = s[0]
    if first.isdigit() or first in "+-.":
        if _INT.fullmatch(s):
            return int(s)
        if _FLOAT.fullmatch(s):
            number = float(s)
            if math.isfinite(number):
                return number
    low = s.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    return raw


def _kind(value: Any, raw: str) -> str:
    if isinstance(value, (bool, int, float)):
        return json_type_name(value)
    s = raw.strip()
    for pattern, parse, kind in ((_DATE, dt.date.fromisoformat, "date"), (_DATETIME, dt.datetime.fromisoformat, "datetime")):
        if pattern.fullmatch(s):
            try:
                parse(s)
            except ValueError:
                return "string"
            return kind
    return "string"


def _round(x: float) -> float | int:
    if isinstance(x, float) and math.isfinite(x):
        return round(x, 6)
    return x


def _column_profile(name: str, raws: list[str]) -> dict[str, Any]:
    present = [r for r in raws if r.strip()]
    typed = [typed_value(r) for r in present]
    kinds = Counter(_kind(v, r) for v, r in zip(typed, present))
    if not present:
        inferred = "empty"
    elif len(kinds) == 1:
        inferred = next(iter(kinds))
    elif set(kinds) <= {"integer", "number"}:
        inferred = "number"
    elif set(kinds) <= {"date", "datetime"}:
        inferred = "datetime"
    else:
        inferred = "string"
    distinct = Counter(r.strip() for r in present)
    samples: list[Any] = []
    for value in typed:
        if len(samples) >= 5:
            break
        if value not in samples:
            samples.append(value)
    info: dict[str, Any] = {
        "name": name, "type": inferred, "non_null": len(present), "nulls": len(raws) - len(present),
        "distinct": len(distinct), "samples": samples,
    }
    if len(kinds) > 1:
        info["type_counts"] = dict(kinds)
    if inferred in ("integer", "number"):
        numbers = [v for v in typed if isinstance(v, (int, float)) and not isinstance(v, bool)]
        info.update({
            "min": min(numbers), "max": max(numbers), "mean": _round(statistics.fmean(numbers)),
            "median": _round(statistics.median(numbers)), "sum": _round(math.fsum(numbers)),
            "stdev": _round(statistics.pstdev(numbers)) if len(numbers) > 1 else 0.0,
        })
    elif inferred in ("date", "datetime"):
        stripped = sorted(r.strip() for r in present)
        info.update({"min": stripped[0], "max": stripped[-1]})
    elif inferred in ("string", "boolean"):
        lengths = [len(r.strip()) for r in present]
        if inferred == "string":
            info.update({"min_length": min(lengths), "max_length": max(lengths)})
        info["top_values"] = [{"value": v, "count": c} for v, c in distinct.most_common(5)]
    return info


def profile_table(table: Table) -> dict[str, Any]:
    """Rows, columns and, per column, the inferred kind, empties, distinct values and statistics."""
    columns = [_column_profile(name, [row[i] for row in table.rows]) for i, name in enumerate(table.columns)]
    result: dict[str, Any] = {
        "row_count": len(table.rows), "column_count": len(table.columns),
        "delimiter": table.delimiter, "columns": columns,
    }
    if table.ragged:
        result["ragged_rows"] = len(table.ragged)
    return result


_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "contains", "in")
_OP_ALIASES = {"==": "eq", "=": "eq", "!=": "ne", "~=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}


def _compile_where(where: dict[str, Any] | None, columns: list[str]) -> list[tuple[int, str, Any]]:
    conditions: list[tuple[int, str, Any]] = []
    problems: list[str] = []
    for name, cond in (where or {}).items():
        if name not in columns:
            problems.append(f"unknown column {name!r} (columns: {', '.join(columns) or 'none'})")
            continue
        index = columns.index(name)
        if isinstance(cond, dict):
            for op, value in cond.items():
                canonical = _OP_ALIASES.get(op, op)
                if canonical not in _OPS:
                    problems.append(f"{name}: unknown operator {op!r} (use one of {', '.join(_OPS)})")
                    continue
                if canonical == "in":
                    if value == {}:
                        value = []
                    if not isinstance(value, (list, tuple)):
                        problems.append(f"{name}: 'in' needs a list of values, got {type(value).__name__}")
                        continue
                conditions.append((index, canonical, _condition_value(value)))
        elif isinstance(cond, list):
            conditions.append((index, "in", [_condition_value(v) for v in cond]))
        else:
            conditions.append((index, "eq", _condition_value(cond)))
    if problems:
        raise InvalidArgument("invalid `where`: " + "; ".join(problems), details={"problems": problems})
    return conditions


def _condition_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_condition_value(v) for v in value]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _equal(raw: str, typed: Any, value: Any) -> bool:
    if value is None:
        return typed is None
    if isinstance(value, bool) or isinstance(typed, bool):
        return typed is value or raw.strip().lower() == _text_of(value).lower()
    if _is_number(value) and _is_number(typed):
        return typed == value
    return raw.strip() == _text_of(value)


def _test(raw: str, typed: Any, op: str, value: Any) -> bool:
    if op == "eq":
        return _equal(raw, typed, value)
    if op == "ne":
        return not _equal(raw, typed, value)
    if op == "in":
        return any(_equal(raw, typed, v) for v in value)
    if op == "contains":
        return _text_of(value) in raw
    if typed is None:
        return False
    other = typed_value(value) if isinstance(value, str) else value
    if _is_number(typed) and _is_number(other):
        a, b = typed, other
    elif isinstance(value, str):
        a, b = raw.strip(), value
    else:
        return False
    return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]


def _select_columns(table: Table, columns: list[str] | None) -> list[int]:
    if columns is None:
        return list(range(len(table.columns)))
    unknown = [c for c in columns if c not in table.columns]
    if unknown:
        raise InvalidArgument(f"unknown column(s) {', '.join(map(repr, unknown))}; the CSV has "
                              f"{', '.join(table.columns) or 'no columns'}", details={"unknown": unknown})
    return [table.columns.index(c) for c in columns]


def _check_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if limit < 0:
        raise InvalidArgument(f"limit must be 0 or more, got {limit}")
    return int(limit)


def filter_table(table: Table, where: dict[str, Any] | None, columns: list[str] | None, limit: int | None,
                 infer_types: bool) -> dict[str, Any]:
    """The rows matching every ``where`` condition, keeping ``columns``, at most ``limit`` of them."""
    conditions = _compile_where(where, table.columns)
    selected = _select_columns(table, columns)
    limit = _check_limit(limit)
    names = [table.columns[i] for i in selected]
    rows: list[dict[str, Any]] = []
    matched = 0
    for row in table.rows:
        typed_cache: dict[int, Any] = {}
        ok = True
        for index, op, value in conditions:
            if index not in typed_cache:
                typed_cache[index] = typed_value(row[index])
            if not _test(row[index], typed_cache[index], op, value):
                ok = False
                break
        if not ok:
            continue
        matched += 1
        if limit is None or len(rows) < limit:
            rows.append({n: (typed_value(row[i]) if infer_types else row[i]) for n, i in zip(names, selected)})
    return {"columns": names, "rows": rows, "count": len(rows), "matched": matched}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def records_in(data: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, records) from JSON records: a list of objects, or a list of rows whose first row names the columns."""
    if isinstance(data, str):
        data = parse_json_text(data, "from_json")
    if isinstance(data, dict):
        data = [data] if data else []
    if not isinstance(data, list):
        raise InvalidArgument("from_json must be a list of records (tables with the same keys) or a list of rows "
                              f"whose first row holds the column names; got {type(data).__name__}")
    if not data:
        return [], []
    if all(isinstance(r, dict) for r in data):
        columns: dict[str, None] = {}
        for record in data:
            for key in record:
                columns.setdefault(str(key), None)
        return list(columns), [{str(k): v for k, v in r.items()} for r in data]
    if all(isinstance(r, list) for r in data):
        header = [_cell(c) for c in data[0]]
        names, _ = _header(header)
        records = [{n: (r[i] if i < len(r) else None) for i, n in enumerate(names)} for r in data[1:]]
        return names, records
    raise InvalidArgument("from_json mixes records (tables) and rows (lists); use one form for every item")


def _write_delimited(columns: list[str], rows: list[list[str]], delimiter: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def convert_table(columns: list[str], records: list[dict[str, Any]] | None, table: Table | None, to: str,
                  infer_types: bool) -> Any:
    """JSON records or a parsed table as ``to``: CSV or TSV text, JSON text, or a list of records."""
    if to in ("csv", "tsv"):
        delim = "," if to == "csv" else "\t"
        if table is not None:
            return _write_delimited(table.columns, table.rows, delim)
        assert records is not None
        return _write_delimited(columns, [[_cell(r.get(c)) for c in columns] for r in records], delim)
    if records is None:
        assert table is not None
        records = [{c: (typed_value(v) if infer_types else v) for c, v in zip(table.columns, row)} for row in table.rows]
    if to == "json":
        return json.dumps(records, ensure_ascii=False, indent=2, allow_nan=False)
    return records


_SNAKE = re.compile(r"[^0-9a-zA-Z]+")


def normalize_table(table: Table) -> tuple[Table, dict[str, Any]]:
    """The table with snake_case unique column names and no blank rows, and what was changed."""
    snake = [(_SNAKE.sub("_", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", c.strip())).strip("_").lower() or c)
             for c in table.columns]
    columns, _ = _header(snake)
    rows: list[list[str]] = []
    lines: list[int] = []
    blank = table.blank_lines  # empty lines count as blank rows too: the file had them
    for row, line in zip(table.rows, table.lines):
        cells = [c.strip() for c in row]
        if not any(cells):
            blank += 1
            continue
        rows.append(cells)
        lines.append(line)
    renamed = {old: new for old, new in zip(table.columns, columns) if old != new}
    normalized = Table(columns, rows, lines, table.delimiter, table.ragged, table.header_problems)
    return normalized, {"renamed": renamed, "removed_blank_rows": blank}


def validate_table(table: Table, max_problems: int = 200) -> dict[str, Any]:
    """The problems of a table (ragged rows, header problems, ...), at most ``max_problems`` of them."""
    problems: list[dict[str, Any]] = []

    def add(severity: str, message: str, line: int | None = None, column: str | None = None) -> None:
        problems.append({"severity": severity, "line": line, "column": column, "message": message})

    if not table.columns:
        add("error", "the CSV is empty (no header row)")
    for text in table.header_problems:
        add("error", text, line=1)
    for info in table.ragged:
        add("error", f"row has {info['fields']} fields, the header has {info['expected']}", line=info["line"])
    for index, name in enumerate(table.columns):
        cells = [(row[index], line) for row, line in zip(table.rows, table.lines)]
        present = [(raw, line) for raw, line in cells if raw.strip()]
        if table.rows and not present:
            add("warning", "column is empty", column=name)
            continue
        numeric = [(raw, line) for raw, line in present if _is_number(typed_value(raw))]
        if present and len(numeric) != len(present) and len(numeric) >= 0.8 * len(present):
            for raw, line in present:
                if not _is_number(typed_value(raw)):
                    add("error", f"expected a number like the rest of the column, got {raw!r}", line=line, column=name)
    errors = sum(1 for p in problems if p["severity"] == "error")
    result: dict[str, Any] = {
        "valid": errors == 0, "row_count": len(table.rows), "column_count": len(table.columns),
        "errors": errors, "warnings": len(problems) - errors, "problems": problems[:max_problems],
    }
    if len(problems) > max_problems:
        result["truncated"] = True
    return result
