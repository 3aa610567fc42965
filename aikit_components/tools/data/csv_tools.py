"""The CSV tools: profile, filter, convert, and several operations in one pass."""

from __future__ import annotations

from typing import Any, Literal

from ...errors import InvalidArgument
from ..base import ToolContext, tool
from .common import offload, one_of
from .csv_table import (
    convert_table,
    filter_table,
    load_table,
    normalize_table,
    profile_table,
    records_in,
    typed_value,
    validate_table,
)


@tool(category="data", security="read", examples=[
    {"args": {"text": "name,age\nAda,36\nAlan,41\n"},
     "result": {"row_count": 2, "column_count": 2, "delimiter": ",", "columns": [
         {"name": "name", "type": "string", "non_null": 2, "nulls": 0, "distinct": 2, "samples": ["Ada", "Alan"],
          "min_length": 3, "max_length": 4, "top_values": [{"value": "Ada", "count": 1}, {"value": "Alan", "count": 1}]},
         {"name": "age", "type": "integer", "non_null": 2, "nulls": 0, "distinct": 2, "samples": [36, 41],
          "min": 36, "max": 41, "mean": 38.5, "median": 38.5, "sum": 77.0, "stdev": 2.5}]}},
])
async def csv_profile(ctx: ToolContext, text: str | None = None, path: str | None = None, delimiter: str = "auto",
                      header: bool = True) -> dict[str, Any]:
    """Profile CSV data: per column the inferred type, counts, and statistics.

    Args:
        text: The CSV text itself (give this or `path`).
        path: A CSV file to read, relative to the working directory (give this or `text`).
        delimiter: The field separator: one character, 'tab', or 'auto' to detect it.
        header: Whether the first row names the columns (else they are column1, column2, ...).

    Returns:
        `{row_count, column_count, delimiter, columns}`; each column has name, type (integer, number,
        boolean, date, datetime, string or empty), non_null, nulls, distinct, samples, and min, max,
        mean, median, sum, stdev for numbers (min_length, max_length, top_values for strings).
    """
    table = await load_table(ctx, text, path, delimiter, header)
    return await offload(lambda: profile_table(table), len(table.rows) * max(1, len(table.columns)) * 8)


@tool(category="data", security="read", examples=[
    {"args": {"text": "name,age\nAda,36\nAlan,41\nGrace,85\n", "where": {"age": {"gt": 40}}, "columns": ["name"]},
     "result": {"columns": ["name"], "rows": [{"name": "Alan"}, {"name": "Grace"}], "count": 2, "matched": 2}},
])
async def csv_filter(ctx: ToolContext, text: str | None = None, path: str | None = None,
                     where: dict[str, Any] | None = None, columns: list[str] | None = None, limit: int | None = None,
                     delimiter: str = "auto", header: bool = True, infer_types: bool = True) -> dict[str, Any]:
    """Select CSV rows matching conditions.

    `where` maps a column to a value (equality), a list (any of), or a table of operators:
    eq, ne, lt, le, gt, ge, contains, in (also ==, !=, <, <=, >, >=). All conditions must hold.
    Numbers compare numerically, other values as text (so ISO dates order correctly).

    Args:
        text: The CSV text itself (give this or `path`).
        path: A CSV file to read, relative to the working directory (give this or `text`).
        where: Conditions by column, e.g. {"age": {"ge": 18}, "city": "Paris"}; empty or absent keeps every row.
        columns: The columns to return, in this order (default: all).
        limit: The most rows to return (`matched` still counts them all).
        delimiter: The field separator: one character, 'tab', or 'auto' to detect it.
        header: Whether the first row names the columns (else they are column1, column2, ...).
        infer_types: Return numbers and booleans as such (empty cells as null) instead of raw text.

    Returns:
        `{columns, rows, count, matched}`: rows as tables keyed by column name.
    """
    table = await load_table(ctx, text, path, delimiter, header)
    return await offload(lambda: filter_table(table, where, columns, limit, infer_types), len(table.rows) * 8)


@tool(category="data", security="read", examples=[
    {"args": {"text": "name,age\nAda,36\n", "to": "records"}, "result": [{"name": "Ada", "age": 36}]},
    {"args": {"from_json": [{"name": "Ada", "age": 36}], "to": "csv"}, "result": "name,age\nAda,36\n"},
])
async def csv_convert(ctx: ToolContext, text: str | None = None, path: str | None = None, from_json: Any = None,
                      to: Literal["json", "csv", "tsv", "records"] = "json", delimiter: str = "auto",
                      header: bool = True, infer_types: bool = True) -> Any:
    """Convert between CSV and JSON records (CSV <-> JSON, CSV <-> TSV).

    Args:
        text: CSV text to convert (give exactly one of `text`, `path`, `from_json`).
        path: A CSV file to convert, relative to the working directory.
        from_json: Records to convert: a list of tables (or its JSON text), or rows headed by the column names.
        to: The output: 'json' (JSON text), 'records' (a list of tables), 'csv' or 'tsv' (text).
        delimiter: The input CSV's field separator: one character, 'tab', or 'auto' to detect it.
        header: Whether the input CSV's first row names the columns.
        infer_types: Turn numeric and boolean cells into numbers and booleans in JSON output.

    Returns:
        A string for 'json', 'csv' and 'tsv'; a list of tables for 'records'.
    """
    one_of("CSV", text=text, path=path, from_json=from_json)
    if from_json is not None:
        columns, records = records_in(from_json)
        return convert_table(columns, records, None, to, infer_types)
    table = await load_table(ctx, text, path, delimiter, header)
    return await offload(lambda: convert_table(table.columns, None, table, to, infer_types), len(table.rows) * 8)


_Operation = Literal["profile", "statistics", "filter", "convert", "normalize", "validate"]


@tool(category="data", security="read", examples=[
    {"args": {"text": "Name , Age\n Ada ,36\n,\n", "operations": ["normalize", "validate"]},
     "result": {"normalize": {"columns": ["name", "age"], "rows": [{"name": "Ada", "age": 36}], "row_count": 1,
                              "renamed": {"Name": "name", "Age": "age"}, "removed_blank_rows": 1},
                "validate": {"valid": True, "row_count": 1, "column_count": 2, "errors": 0, "warnings": 0,
                             "problems": []}}},
])
async def csv_process(ctx: ToolContext, text: str | None = None, path: str | None = None,
                      operation: _Operation = "profile", operations: list[_Operation] | None = None,
                      where: dict[str, Any] | None = None, columns: list[str] | None = None,
                      limit: int | None = None, to: Literal["json", "csv", "tsv", "records"] = "records",
                      delimiter: str = "auto", header: bool = True) -> Any:
    """Run one or more CSV operations (the mission engine's `csv_process` step).

    Operations: profile / statistics (as csv_profile), filter (as csv_filter with `where`,
    `columns`, `limit`), convert (as csv_convert with `to`), normalize (trim cells, snake_case
    column names, drop blank rows), validate (header problems, ragged rows, non-numbers in
    numeric columns, empty columns). With `operations`, each runs in turn and a `normalize`
    earlier in the list cleans the data the later ones see.

    Args:
        text: The CSV text itself (give this or `path`).
        path: A CSV file to read, relative to the working directory (give this or `text`).
        operation: The single operation to run when `operations` is not given.
        operations: Several operations to run in order; the result is a table keyed by operation.
        where: Conditions for 'filter' (see csv_filter).
        columns: Columns to keep for 'filter'.
        limit: Most rows to return for 'filter'.
        to: Output form for 'convert': 'json', 'records', 'csv' or 'tsv'.
        delimiter: The field separator: one character, 'tab', or 'auto' to detect it.
        header: Whether the first row names the columns.

    Returns:
        The operation's result, or `{operation: result}` for each of `operations`.
    """
    if operations is not None and not operations:
        raise InvalidArgument("operations is empty; list at least one of profile, statistics, filter, convert, "
                              "normalize, validate")
    steps = list(operations) if operations else [operation]
    table = await load_table(ctx, text, path, delimiter, header)

    def run() -> Any:
        current = table
        results: dict[str, Any] = {}
        for step in steps:
            if step in ("profile", "statistics"):
                results[step] = profile_table(current)
            elif step == "filter":
                results[step] = filter_table(current, where, columns, limit, True)
            elif step == "convert":
                results[step] = convert_table(current.columns, None, current, to, True)
            elif step == "normalize":
                current, info = normalize_table(current)
                records = [{c: typed_value(v) for c, v in zip(current.columns, row)} for row in current.rows]
                results[step] = {"columns": current.columns, "rows": records, "row_count": len(records), **info}
            elif step == "validate":
                results[step] = validate_table(current)
            else:  # pragma: no cover - the schema's enum stops this
                raise InvalidArgument(f"unknown operation {step!r}")
        return results if operations else results[steps[0]]

    return await offload(run, len(table.rows) * 8 * len(steps))
