"""Direct identifiers at the door: columns of a delivery that look like who a patient is.

Raw keeps every delivered column; curated keeps only contract columns, and features refuse
identifying ones. This module only finds what arrived so that someone is told: a column is
suspect by its name (PATNAME, EMAIL, PHONE, BRTHDTC, ...) or by its values (most of them look
like e-mail addresses, phone numbers or "Given Family" names). Values are counted in the pass
that writes raw, as observed metrics, so finding them costs no extra read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

# Upper-cased column names (separators removed) that name a direct identifier, by kind.
NAME_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "patient name",
        re.compile(
            r"(PAT|PT|SUBJ|FIRST|LAST|GIVEN|FAMILY|MIDDLE|SUR|FULL)NAME|^NAME$|^(F|L)NAME$|INITIALS"
        ),
    ),
    ("e-mail address", re.compile(r"E?MAIL")),
    ("phone number", re.compile(r"PHONE|^TEL|MOBILE|^FAX")),
    ("date of birth", re.compile(r"BRTHDTC|BIRTH|^DOB$")),
    ("postal address", re.compile(r"ADDRESS|STREET|ZIP|POSTCODE|POSTALCODE")),
    ("national or medical record number", re.compile(r"SSN|SOCIALSEC|^MRN$|NHSN|PASSPORT")),
)
# What most values of a column look like when it holds identifiers (Spark's Java regex).
VALUE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("e-mail address", r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"),
    ("phone number", r"^\+?[0-9][0-9 ()./-]{6,}[0-9]$"),
    ("patient name", r"^[A-Z][a-z'-]+,? [A-Z][a-z'-]+$"),
)
VALUE_SHARE = 0.5  # a column is suspect when at least this share of its values match


def _plain(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", name.upper())


def by_name(columns: Iterable[str]) -> dict[str, str]:
    """Columns whose name says they hold a direct identifier, with the kind."""
    found: dict[str, str] = {}
    for name in columns:
        for kind, pattern in NAME_PATTERNS:
            if pattern.search(_plain(name)):
                found[name] = kind
                break
    return found


def _metric(column: str, kind: str) -> str:
    return f"_id_{_plain(column)}_{_plain(kind)}"


def value_metrics(text_columns: Sequence[str]) -> list[Column]:
    """Observed metrics: per text column, its non-blank values and how many match each kind."""
    metrics: list[Column] = []
    for name in text_columns:
        value = F.trim(F.col(f"`{name}`"))
        present = value.isNotNull() & (value != "")
        metrics.append(F.sum(F.when(present, 1).otherwise(0)).alias(_metric(name, "values")))
        for kind, regex in VALUE_PATTERNS:
            hit = present & value.rlike(regex)
            metrics.append(F.sum(F.when(hit, 1).otherwise(0)).alias(_metric(name, kind)))
    return metrics


def by_value(text_columns: Sequence[str], metrics: Mapping[str, Any]) -> dict[str, str]:
    """Columns most of whose values look like one kind of identifier, from `value_metrics`."""
    found: dict[str, str] = {}
    for name in text_columns:
        values = int(metrics.get(_metric(name, "values")) or 0)
        for kind, _ in VALUE_PATTERNS:
            hits = int(metrics.get(_metric(name, kind)) or 0)
            if values and hits / values >= VALUE_SHARE:
                found[name] = kind
                break
    return found


# ---- at the exit: values of a feature table -----------------------------------------------

# What a feature value must never look like. Features hold codes, counts and study days; a
# column most of whose values look like one of these is a leak, whatever its name.
# Dates first: a phone number's pattern also matches 2013-07-01.
FEATURE_VALUE_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        "calendar date",
        r"^([0-9]{4}-[0-9]{2}(-[0-9]{2})?|[0-9]{1,2}[/.][0-9]{1,2}[/.][0-9]{2,4}"
        r"|[0-9]{2}[A-Za-z]{3}[0-9]{4})([T ].*)?$",
    ),
    *VALUE_PATTERNS,
    ("free text", r"^\S+(\s+\S+){7,}$"),  # eight words or more: a narrative, not a code
)
# The columns whose values say which subject a row is about (the SDTM subject ids).
SUBJECT_COLUMNS = ("USUBJID", "SUBJID")
SUBJECT_ID = "subject identifier (USUBJID or SUBJID)"
_ID_HIT = "_subject_id"


def identifying_values(
    frame: DataFrame, columns: Sequence[str], subject_ids: DataFrame | None
) -> dict[str, str]:
    """Text columns of `frame` whose values identify someone, with the kind: any value equal
    to one of the study's subject ids (`subject_ids`, one column `id`), or at least VALUE_SHARE
    of the values looking like e-mail addresses, phone numbers, names, dates or free text.

    One aggregation over the frame (every column's cells side by side), so a feature table is
    read once whatever its width.
    """
    if not columns:
        return {}
    cells = frame.select(
        F.explode(
            F.array(
                *[
                    F.struct(
                        F.lit(name).alias("column"),
                        F.trim(F.col(f"`{name}`").cast("string")).alias("value"),
                    )
                    for name in columns
                ]
            )
        ).alias("cell")
    ).select("cell.*")
    cells = cells.where(F.col("value").isNotNull() & (F.col("value") != ""))
    counts = [
        F.sum(F.when(F.col("value").rlike(regex), 1).otherwise(0)).alias(_plain(kind))
        for kind, regex in FEATURE_VALUE_PATTERNS
    ]
    if subject_ids is not None:
        ids = subject_ids.select(F.trim(F.col("id")).alias("value")).distinct()
        cells = cells.join(ids.withColumn(_ID_HIT, F.lit(1)), "value", "left")
        counts.append(F.sum(F.coalesce(F.col(_ID_HIT), F.lit(0))).alias(_ID_HIT))
    found: dict[str, str] = {}
    for row in cells.groupBy("column").agg(F.count(F.lit(1)).alias("_values"), *counts).collect():
        if subject_ids is not None and row[_ID_HIT]:
            found[row["column"]] = SUBJECT_ID
            continue
        for kind, _ in FEATURE_VALUE_PATTERNS:
            if int(row[_plain(kind)]) / int(row["_values"]) >= VALUE_SHARE:
                found[row["column"]] = kind
                break
    return dict(sorted(found.items()))
