"""Conforming raw SDTM values to their contract: types, ISO 8601 dates, terminology.

Built-in Spark SQL only (no UDFs). The session runs with ANSI mode off, so a value that does
not convert becomes null and the `castable` rule, which compares it with its source text,
decides what happens to the row.

Text is kept exactly but for trailing blanks: SAS pads character values on the right, so those
are padding, while leading blanks are part of the value (docs/data_quality.md, "Values kept
exactly").
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import DataFrame

from spark_jobs.contracts import Column, ColumnType, DatasetContract
from spark_jobs.contracts.outputs import date_column, precision_column
from spark_jobs.quality.sql_text import ident, text

RAW_PREFIX = "__raw_"
NUMERIC_SOURCE_TYPES = ("double", "float", "int", "bigint", "smallint", "tinyint")
TIMESTAMP_SOURCE_TYPES = ("timestamp", "timestamp_ntz", "date")
# Contract types whose value is converted from its source, so `castable` judges the conversion.
CONVERTED_TYPES = (ColumnType.DOUBLE, ColumnType.INTEGER, ColumnType.TIMESTAMP)
# SDTM ISO 8601: right-truncated date/time (partial dates valid), optional fraction and zone.
ISO8601 = (
    "^[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9]{2}(:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?)?"
    "(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?)?)?$"
)
PRECISIONS = ("year", "month", "day", "hour", "minute", "second")
MAX_EXACT_INTEGER = 2**53


def raw_name(name: str) -> str:
    return f"{RAW_PREFIX}{name}"


def source_name(name: str) -> str:
    """Text of the source value of a numeric column, kept to judge and report conversions."""
    return f"__src_{name}"


def iso_valid_column(name: str) -> str:
    return f"__iso_valid_{name}"


def iso_earliest_column(name: str) -> str:
    return f"__iso_earliest_{name}"


def _rank_column(name: str) -> str:
    return f"__iso_rank_{name}"


def unpadded(sql: str) -> str:
    """Text without its trailing blanks (SAS padding); null if nothing else is left."""
    return f"nullif(rtrim(CAST({sql} AS STRING)), '')"


def source_text(name: str, source_type: str) -> str:
    """The source value as text, without float noise on whole numbers or trailing padding."""
    col = ident(raw_name(name))
    if source_type in NUMERIC_SOURCE_TYPES:
        return (
            f"CASE WHEN {col} = floor({col}) AND abs({col}) < 1e15 "
            f"THEN CAST(CAST({col} AS BIGINT) AS STRING) ELSE CAST({col} AS STRING) END"
        )
    return unpadded(col)


def _as_double(name: str, source_type: str) -> str:
    """The number a value denotes; Spark's cast ignores blanks around it (" 7" is 7).

    Blanks are not digits; the text as delivered stays in `__src_<name>` for `castable`.
    """
    col = ident(raw_name(name))
    value = (
        f"CAST({col} AS DOUBLE)"
        if source_type in NUMERIC_SOURCE_TYPES
        else f"CAST({unpadded(col)} AS DOUBLE)"
    )
    return (
        f"CASE WHEN isnan({value}) OR abs({value}) = double('infinity') THEN NULL ELSE {value} END"
    )


def _as_timestamp(name: str, source_type: str) -> str:
    """The instant a value denotes: a Parquet timestamp as it is, ISO 8601 text (a zone or
    `Z`, else UTC, the session's zone) converted. A number is no instant: epoch seconds and
    milliseconds cannot be told apart, so it stays null and `castable` says why."""
    col = ident(raw_name(name))
    if source_type in TIMESTAMP_SOURCE_TYPES:
        return f"CAST({col} AS TIMESTAMP)"
    if source_type in NUMERIC_SOURCE_TYPES:
        return "CAST(NULL AS TIMESTAMP)"
    return f"CAST({unpadded(col)} AS TIMESTAMP)"


def _canonical(expression: str, values: tuple[str, ...]) -> str:
    """Controlled terminology in its submission spelling, matched ignoring case."""
    pairs = ", ".join(f"{text(v.upper())}, {text(v)}" for v in dict.fromkeys(values))
    return f"coalesce(map({pairs})[upper({expression})], {expression})"


def typed_value(column: Column, source_type: str | None, units: tuple[str, ...] = ()) -> str:
    """SQL for the contract-typed value of a column (null if absent, blank or unconvertible)."""
    if source_type is None:
        return f"CAST(NULL AS {column.type.spark_sql})"
    if column.type in (ColumnType.STRING, ColumnType.DATETIME):
        value = source_text(column.name, source_type)
        if column.terminology:
            value = _canonical(value, column.terminology)
        if units:
            value = _canonical(value, units)
        return value
    if column.type is ColumnType.TIMESTAMP:
        return _as_timestamp(column.name, source_type)
    number = _as_double(column.name, source_type)
    if column.type is ColumnType.DOUBLE:
        return (
            f"round({number}, {column.round_digits})" if column.round_digits is not None else number
        )
    return (
        f"CASE WHEN {number} = floor({number}) AND abs({number}) <= {MAX_EXACT_INTEGER} "
        f"THEN CAST({number} AS BIGINT) END"
    )


def _iso_rank(name: str) -> str:
    """0 for null or malformed text, else 1..6 for year..second precision."""
    col = ident(name)

    def char(position: int, value: str) -> str:
        return f"substring({col}, {position}, 1) = {text(value)}"

    return (
        f"CASE WHEN {col} IS NULL OR NOT ({col} RLIKE {text(ISO8601)}) THEN 0 "
        f"WHEN length({col}) >= 19 AND {char(11, 'T')} AND {char(14, ':')} AND {char(17, ':')} "
        "THEN 6 "
        f"WHEN length({col}) >= 16 AND {char(11, 'T')} AND {char(14, ':')} THEN 5 "
        f"WHEN length({col}) >= 13 AND {char(11, 'T')} THEN 4 "
        f"WHEN length({col}) >= 10 THEN 3 "
        f"WHEN length({col}) >= 7 THEN 2 ELSE 1 END"
    )


def _iso_parts(name: str) -> dict[str, str]:
    """Validity, parsed date, precision and earliest possible day of one ISO 8601 column."""
    col, rank = ident(name), ident(_rank_column(name))

    def part(position: int, min_rank: int) -> str:
        return f"CASE WHEN {rank} >= {min_rank} THEN int(substring({col}, {position}, 2)) END"

    year = f"int(substring({col}, 1, 4))"
    month, day = part(6, 2), part(9, 3)
    hour, minute, second = part(12, 4), part(15, 5), part(18, 6)
    full_date = f"make_date({year}, {month}, {day})"
    valid = (
        f"({col} IS NULL OR ({rank} > 0 "
        f"AND ({rank} < 2 OR {month} BETWEEN 1 AND 12) "
        f"AND ({rank} < 3 OR {full_date} IS NOT NULL) "
        f"AND ({rank} < 4 OR {hour} BETWEEN 0 AND 23) "
        f"AND ({rank} < 5 OR {minute} BETWEEN 0 AND 59) "
        f"AND ({rank} < 6 OR {second} BETWEEN 0 AND 59)))"
    )
    parsed = f"({col} IS NOT NULL AND {valid})"
    precisions = ", ".join(text(p) for p in PRECISIONS)
    return {
        iso_valid_column(name): valid,
        date_column(name): f"CASE WHEN {parsed} AND {rank} >= 3 THEN {full_date} END",
        precision_column(name): f"CASE WHEN {parsed} THEN element_at(array({precisions}), "
        f"{rank}) END",
        iso_earliest_column(name): f"CASE WHEN {parsed} THEN make_date({year}, "
        f"coalesce({month}, 1), coalesce({day}, 1)) END",
    }


def _select(df: DataFrame, expressions: Mapping[str, str]) -> DataFrame:
    if not expressions:
        return df
    return df.selectExpr("*", *[f"{sql} AS {ident(alias)}" for alias, sql in expressions.items()])


def conform_types(
    raw: DataFrame, contract: DatasetContract, source_types: Mapping[str, str]
) -> DataFrame:
    """Raw rows (columns renamed `__raw_<name>`) plus the typed, normalised contract columns.

    `source_types` maps each raw data column present to its Spark type name.
    """
    work = raw.selectExpr(
        *[f"{ident(c)} AS {ident(raw_name(c))}" for c in source_types],
        *[ident(c) for c in raw.columns if c not in source_types],
    )
    units = tuple(contract.standard_units.values())
    typed: dict[str, str] = {}
    for column in contract.columns:
        source_type = source_types.get(column.name)
        typed[column.name] = typed_value(
            column, source_type, units if column.name == contract.unit_column else ()
        )
        if column.type in CONVERTED_TYPES and source_type is not None:
            typed[source_name(column.name)] = source_text(column.name, source_type)
    return _select(work, typed)


def parse_dates(typed: DataFrame, contract: DatasetContract) -> DataFrame:
    """Validity, `<col>_DATE`, `<col>_PRECISION` and earliest day of every ISO 8601 column."""
    work = _select(typed, {_rank_column(n): _iso_rank(n) for n in contract.datetime_columns})
    parts: dict[str, str] = {}
    for name in contract.datetime_columns:
        parts.update(_iso_parts(name))
    return _select(work, parts)


def conform(
    raw: DataFrame, contract: DatasetContract, source_types: Mapping[str, str]
) -> DataFrame:
    """Raw rows plus typed contract columns and parsed dates (see the two steps above)."""
    return parse_dates(conform_types(raw, contract, source_types), contract)
