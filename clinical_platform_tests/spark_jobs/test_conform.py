"""Level 1: conforming raw SDTM values and evaluating row rules on tiny DataFrames.

Every DataFrame is built here and collected once per fixture or test, so each assertion checks
values (which row got which reason, flag or typed value) without re-running Spark per case.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pyspark
import pytest
from pyspark.sql import DataFrame, Row, SparkSession

from spark_jobs.contracts import DatasetContract, Effect, contract_for
from spark_jobs.quality.conform import conform
from spark_jobs.quality.evaluate import evaluate, key_text, row_rules
from spark_jobs.quality.metrics import examples_column, examples_of, rule_metrics
from spark_jobs.quality.rule_sql import EvaluationContext

STUDY = "S01"
TODAY = dt.date(2024, 1, 15)
SUBJECT = "S01-001"
AE = contract_for("ae", STUDY)
VS = contract_for("vs", STUDY)
LB = contract_for("lb", STUDY)
SV = contract_for("sv", STUDY)
DM = contract_for("dm", STUDY)

AE_BASE: dict[str, Any] = {
    "STUDYID": STUDY,
    "DOMAIN": "AE",
    "USUBJID": SUBJECT,
    "AETERM": "HEADACHE",
    "AEDECOD": "Headache",
    "AESEV": "MILD",
}
VS_BASE: dict[str, Any] = {
    "STUDYID": STUDY,
    "DOMAIN": "VS",
    "USUBJID": SUBJECT,
    "VSTESTCD": "SYSBP",
    "VSTEST": "Systolic Blood Pressure",
    "VSSTRESU": "mmHg",
}
LB_BASE: dict[str, Any] = {
    "STUDYID": STUDY,
    "DOMAIN": "LB",
    "USUBJID": SUBJECT,
    "LBTESTCD": "ALT",
    "LBTEST": "Alanine Aminotransferase",
    "LBSTRESU": "U/L",
}
SV_BASE: dict[str, Any] = {"STUDYID": STUDY, "DOMAIN": "SV", "USUBJID": SUBJECT, "VISIT": "WEEK 8"}

Case = tuple[str, Mapping[str, Any]]


def raw_frame(
    spark: SparkSession, cases: Sequence[Case], types: Mapping[str, str] | None = None
) -> tuple[DataFrame, dict[str, str]]:
    """A raw-zone-like frame (one row per case, `_source_row` = case number) and its types.

    Columns not listed in `types` are text, as they are when the delivery was a CSV file.
    """
    types = types or {}
    columns = sorted({name for _, values in cases for name in values})
    source_types = {name: types.get(name, "string") for name in columns}
    schema = ", ".join(
        [
            *(f"`{n}` {t}" for n, t in source_types.items()),
            "_source_uri string",
            "_source_row bigint",
        ]
    )
    data = [
        (*(values.get(n) for n in columns), "file:/landing/x.csv", number)
        for number, (_, values) in enumerate(cases, start=1)
    ]
    return spark.createDataFrame(data, schema), source_types


def context_with_dm(spark: SparkSession, subjects: Sequence[str] = (SUBJECT,)) -> EvaluationContext:
    dm = spark.createDataFrame([(s,) for s in subjects], "USUBJID string")
    return EvaluationContext(STUDY, TODAY, dm)


def evaluate_cases(
    spark: SparkSession,
    contract: DatasetContract,
    base: Mapping[str, Any],
    cases: Sequence[Case],
    context: EvaluationContext,
    types: Mapping[str, str] | None = None,
) -> dict[str, Row]:
    """Conform and evaluate one row per case (base values overridden), keyed by case label.

    Rows removed as exact duplicates are absent from the result.
    """
    full = [(label, {**base, **values}) for label, values in cases]
    raw, source_types = raw_frame(spark, full, types)
    evaluated = evaluate(raw, contract, source_types, context)
    rows = evaluated.select(
        "_source_row",
        "_reject_reasons",
        "_reject_details",
        "_flags",
        "_flag_details",
        "_duplicates_collapsed",
        *contract.column_names,
    ).collect()
    labels = [label for label, _ in cases]
    return {labels[row["_source_row"] - 1]: row for row in rows}


def with_reason(rows: Mapping[str, Row], rule: str) -> set[str]:
    return {label for label, row in rows.items() if rule in row["_reject_reasons"]}


def with_flag(rows: Mapping[str, Row], rule: str) -> set[str]:
    return {label for label, row in rows.items() if rule in row["_flags"]}


# ---------------------------------------------------------------------------- ISO 8601

ISO_CASES: dict[str, tuple[bool, str | None, dt.date | None]] = {
    # text: (valid, precision, parsed date)
    "2014-01-02": (True, "day", dt.date(2014, 1, 2)),
    "2014": (True, "year", None),
    "2014-02": (True, "month", None),
    "2014-01-02T10": (True, "hour", dt.date(2014, 1, 2)),
    "2014-01-02T10:30": (True, "minute", dt.date(2014, 1, 2)),
    "2014-01-02T10:30:15": (True, "second", dt.date(2014, 1, 2)),
    "2014-01-02T10:30:15.250": (True, "second", dt.date(2014, 1, 2)),
    "2014-01-02T10:30Z": (True, "minute", dt.date(2014, 1, 2)),
    "2014-01-02T10:30:15+01:00": (True, "second", dt.date(2014, 1, 2)),
    "2014-01-02T10:30-05:00": (True, "minute", dt.date(2014, 1, 2)),
    "2014-13-45": (False, None, None),
    "2014-02-30": (False, None, None),
    "2014-00": (False, None, None),
    "2014-1-5": (False, None, None),
    "20140102": (False, None, None),
    "2014-01-02T25:00": (False, None, None),
    "2014-01-02T10:60": (False, None, None),
    "2014-01-02 10:30": (False, None, None),
}


@pytest.fixture(scope="module")
def iso_rows(spark: SparkSession) -> dict[str | None, Row]:
    """AESTDTC of every ISO case plus blank and null, conformed once."""
    values: list[str | None] = [*ISO_CASES, "", "   ", None]
    raw = spark.createDataFrame([(v,) for v in values], "AESTDTC string")
    conformed = conform(raw, AE, {"AESTDTC": "string"})
    rows = conformed.select(
        "__raw_AESTDTC", "AESTDTC", "AESTDTC_DATE", "AESTDTC_PRECISION", "__iso_valid_AESTDTC"
    ).collect()
    return {row["__raw_AESTDTC"]: row for row in rows}


@pytest.mark.parametrize("value", list(ISO_CASES))
def test_iso8601_validity_precision_and_date(iso_rows: dict[str | None, Row], value: str) -> None:
    """Valid and partial dates parse with their precision; partial dates get no imputed date."""
    valid, precision, parsed = ISO_CASES[value]
    row = iso_rows[value]
    assert row["AESTDTC"] == value  # the text is kept exactly as delivered
    assert row["__iso_valid_AESTDTC"] is valid
    assert row["AESTDTC_PRECISION"] == precision
    assert row["AESTDTC_DATE"] == parsed


@pytest.mark.parametrize("value", ["", "   ", None])
def test_blank_date_is_null_and_valid(iso_rows: dict[str | None, Row], value: str | None) -> None:
    """A blank or missing date is simply absent: null everywhere, and not an ISO violation."""
    row = iso_rows[value]
    assert row["AESTDTC"] is None
    assert row["AESTDTC_DATE"] is None
    assert row["AESTDTC_PRECISION"] is None
    assert row["__iso_valid_AESTDTC"] is True


# ---------------------------------------------------------------------------- typed values


@pytest.fixture(scope="module")
def typed_rows(spark: SparkSession) -> list[Row]:
    """VS values of every typing case, from text and from SAS numeric sources, conformed once."""
    rows = [
        (" 120 ", "1.0", 701.0, 9.299999999999999, "mmhg", "sysbp"),
        ("1.5", "1.5", 701.5, 9.3, "BEATS/MIN", "pulse"),
        ("abc", "abc", -3.0, 2.0, "KG", "weight"),
        ("NaN", "NaN", None, float("nan"), "furlongs", "height"),
        ("Infinity", "-Infinity", 1e20, float("inf"), "", "GRIP"),
        ("", "  ", 0.0, None, " mmHg ", None),
        ("1e3", "7", 12.25, 1.0, None, "Temp"),
    ]
    types = {
        "VSSTRESN": "string",
        "VSSEQ": "string",
        "VSORRES": "double",
        "VISITNUM": "double",
        "VSSTRESU": "string",
        "VSTESTCD": "string",
    }
    schema = ", ".join(f"{name} {kind}" for name, kind in types.items())
    conformed = conform(spark.createDataFrame(rows, schema), VS, types)
    return conformed.select(
        "VSSTRESN",
        "__src_VSSTRESN",
        "VSSEQ",
        "__src_VSSEQ",
        "VSORRES",
        "VISITNUM",
        "__src_VISITNUM",
        "VSSTRESU",
        "VSTESTCD",
    ).collect()


def test_numeric_text_to_double(typed_rows: list[Row]) -> None:
    """Text numbers are cast (blanks around them are no digits); non-numbers, NaN and
    infinities become null. The source text loses only its trailing padding."""
    assert [r["VSSTRESN"] for r in typed_rows] == [120.0, 1.5, None, None, None, None, 1000.0]
    assert [r["__src_VSSTRESN"] for r in typed_rows] == [
        " 120",
        "1.5",
        "abc",
        "NaN",
        "Infinity",
        None,
        "1e3",
    ]


def test_text_to_integer_requires_a_whole_number(typed_rows: list[Row]) -> None:
    """Text "1.0" is the integer 1; "1.5", "abc", NaN and infinities are not integers."""
    assert [r["VSSEQ"] for r in typed_rows] == [1, None, None, None, None, None, 7]
    assert [r["__src_VSSEQ"] for r in typed_rows] == [
        "1.0",
        "1.5",
        "abc",
        "NaN",
        "-Infinity",
        None,
        "7",
    ]


def test_numeric_source_to_text_column_drops_float_noise(typed_rows: list[Row]) -> None:
    """A SAS numeric landing in a text column reads "701", not "701.0"; fractions keep digits."""
    assert [r["VSORRES"] for r in typed_rows] == [
        "701",
        "701.5",
        "-3",
        None,
        "1.0E20",
        "0",
        "12.25",
    ]


def test_key_like_double_is_rounded(typed_rows: list[Row]) -> None:
    """VISITNUM 9.299999999999999 is 9.3 after conforming, so it equals a delivered 9.3."""
    assert typed_rows[0]["VISITNUM"] == 9.3
    assert typed_rows[0]["VISITNUM"] == typed_rows[1]["VISITNUM"]
    assert typed_rows[0]["__src_VISITNUM"] == "9.299999999999999"
    assert [r["VISITNUM"] for r in typed_rows[2:]] == [2.0, None, None, None, 1.0]


def test_units_and_test_codes_take_their_submission_spelling(typed_rows: list[Row]) -> None:
    """Units and test codes match ignoring case ("mmhg" -> "mmHg"); others stay as delivered.

    A leading blank is part of the value, so " mmHg " is " mmHg", not the unit mmHg.
    """
    assert [(r["VSSTRESU"], r["VSTESTCD"]) for r in typed_rows] == [
        ("mmHg", "SYSBP"),
        ("beats/min", "PULSE"),
        ("kg", "WEIGHT"),
        ("furlongs", "HEIGHT"),
        (None, "GRIP"),
        (" mmHg", None),
        (None, "TEMP"),
    ]


# ---------------------------------------------------------------------------- AE rules

SAME_EVENT = {"AESEQ": "30", "AESTDTC": "2014-02-10"}
AE_CASES: list[Case] = [
    ("clean", {"AESEQ": "1", "AESTDTC": "2014-02-10", "AEENDTC": "2014-02-12"}),
    ("seq_fraction", {"AESEQ": "1.5"}),
    ("code_text", {"AESEQ": "3", "AELLTCD": "abc"}),
    ("code_whole", {"AESEQ": "4", "AELLTCD": "10019211.0"}),
    ("bad_date", {"AESEQ": "5", "AESTDTC": "2014-02-30"}),
    ("bad_end", {"AESEQ": "6", "AEENDTC": "20140210"}),
    ("too_long", {"AESEQ": "7", "AEACN": "x" * 201}),
    ("max_long", {"AESEQ": "8", "AEACN": "x" * 200}),
    ("other_study", {"AESEQ": "9", "STUDYID": "OTHER"}),
    ("no_study", {"AESEQ": "10", "STUDYID": ""}),
    ("not_in_dm", {"AESEQ": "11", "USUBJID": "S01-999"}),
    ("future_day", {"AESEQ": "12", "AESTDTC": "2024-01-16"}),
    ("today", {"AESEQ": "13", "AESTDTC": "2024-01-15T23:59"}),
    ("future_year", {"AESEQ": "14", "AESTDTC": "2099"}),
    ("this_year", {"AESEQ": "15", "AESTDTC": "2024"}),
    ("this_month", {"AESEQ": "16", "AESTDTC": "2024-01"}),
    ("future_end", {"AESEQ": "17", "AEENDTC": "2025-03"}),
    ("end_same_month", {"AESEQ": "18", "AESTDTC": "2014-02-10", "AEENDTC": "2014-02"}),
    ("end_month_before", {"AESEQ": "19", "AESTDTC": "2014-02-10", "AEENDTC": "2014-01"}),
    ("end_day_before", {"AESEQ": "20", "AESTDTC": "2014-02-10T08:00", "AEENDTC": "2014-02-09"}),
    ("end_same_day_time", {"AESEQ": "21", "AESTDTC": "2014-02-10T08:00", "AEENDTC": "2014-02-10"}),
    (
        "end_minute_before",
        {"AESEQ": "22", "AESTDTC": "2014-02-10T08:30", "AEENDTC": "2014-02-10T08:29"},
    ),
    ("severity_case", {"AESEQ": "23", "AESEV": "moderate"}),
    ("severity_unknown", {"AESEQ": "24", "AESEV": "VERY BAD"}),
    ("dup_first", SAME_EVENT),
    ("dup_second", SAME_EVENT),
    ("dup_third", SAME_EVENT),
    ("conflict_a", {"AESEQ": "31", "AETERM": "HEADACHE"}),
    ("conflict_b", {"AESEQ": "31", "AETERM": "NAUSEA"}),
    ("no_subject", {"AESEQ": "32", "USUBJID": None}),
    ("seq_abc", {"AESEQ": "abc"}),
    ("seq_xyz", {"AESEQ": "xyz"}),
]


@pytest.fixture(scope="module")
def ae_rows(spark: SparkSession) -> dict[str, Row]:
    """Every AE case evaluated in one pass (one Spark action for all rule families)."""
    return evaluate_cases(spark, AE, AE_BASE, AE_CASES, context_with_dm(spark))


def test_clean_row_has_no_reasons_or_flags(ae_rows: dict[str, Row]) -> None:
    """A row that breaks nothing is curated with empty reasons and flags."""
    clean = ae_rows["clean"]
    assert (clean["_reject_reasons"], clean["_flags"], clean["_duplicates_collapsed"]) == (
        [],
        [],
        0,
    )


def test_castable(ae_rows: dict[str, Row]) -> None:
    """Values that do not convert to their type are quarantined, naming column and value."""
    assert with_reason(ae_rows, "castable") == {"seq_fraction", "code_text", "seq_abc", "seq_xyz"}
    assert ae_rows["seq_fraction"]["_reject_details"][0] == (
        "castable: AESEQ='1.5' is not an integer"
    )
    assert ae_rows["code_text"]["_reject_details"] == ["castable: AELLTCD='abc' is not an integer"]
    assert ae_rows["code_whole"]["AELLTCD"] == 10019211


def test_iso8601(ae_rows: dict[str, Row]) -> None:
    """Only impossible or malformed dates are quarantined; partial dates are valid."""
    assert with_reason(ae_rows, "iso8601") == {"bad_date", "bad_end"}
    assert ae_rows["bad_date"]["_reject_details"] == [
        "iso8601: AESTDTC='2014-02-30' is not an ISO 8601 date/time"
    ]


def test_max_length(ae_rows: dict[str, Row]) -> None:
    """A text one character over its limit is quarantined; exactly at the limit is fine."""
    assert with_reason(ae_rows, "max_length") == {"too_long"}
    assert ae_rows["too_long"]["_reject_details"] == [
        "max_length: AEACN has 201 characters, at most 200 allowed"
    ]


def test_study_matches(ae_rows: dict[str, Row]) -> None:
    """A row of another study, or without a study, is quarantined."""
    assert with_reason(ae_rows, "study_matches") == {"other_study", "no_study"}
    assert ae_rows["other_study"]["_reject_details"] == [
        f"study_matches: STUDYID='OTHER' differs from the partition's study {STUDY}"
    ]
    assert ae_rows["no_study"]["_reject_details"] == [
        f"study_matches: STUDYID='' differs from the partition's study {STUDY}"
    ]


def test_subject_in_dm(ae_rows: dict[str, Row]) -> None:
    """A subject that DM of the delivery does not know (or no subject) is quarantined."""
    assert with_reason(ae_rows, "subject_in_dm") == {"not_in_dm", "no_subject"}
    assert ae_rows["not_in_dm"]["_reject_details"] == [
        "subject_in_dm: USUBJID='S01-999' is not in DM of this delivery"
    ]


def test_future_date(ae_rows: dict[str, Row]) -> None:
    """Dates after today are quarantined, partial ones when even their earliest day is later."""
    assert with_reason(ae_rows, "future_date") == {"future_day", "future_year", "future_end"}
    assert ae_rows["future_year"]["_reject_details"] == [
        ("future_date: AESTDTC='2099' lies after 2024-01-15")
    ]
    assert ae_rows["future_end"]["_reject_details"] == [
        ("future_date: AEENDTC='2025-03' lies after 2024-01-15")
    ]


def test_end_before_start_at_shared_precision(ae_rows: dict[str, Row]) -> None:
    """Start 2014-02-10 and end 2014-02 may be the same month (not flagged); 2014-01 is before."""
    assert with_flag(ae_rows, "end_before_start") == {
        "end_month_before",
        "end_day_before",
        "end_minute_before",
    }
    assert ae_rows["end_month_before"]["_flag_details"] == [
        "end_before_start: AEENDTC='2014-01' is before AESTDTC='2014-02-10'"
    ]
    # WARN: the row stays curated.
    assert ae_rows["end_month_before"]["_reject_reasons"] == []


def test_terminology_flags_unknown_values_and_keeps_them(ae_rows: dict[str, Row]) -> None:
    """An unknown severity is flagged (warn) and kept as delivered; a case variant is fixed."""
    assert with_flag(ae_rows, "terminology") == {"severity_unknown"}
    unknown = ae_rows["severity_unknown"]
    assert unknown["AESEV"] == "VERY BAD"
    assert unknown["_reject_reasons"] == []
    assert unknown["_flag_details"] == [
        ("terminology: AESEV='VERY BAD' is not in its controlled terminology")
    ]
    assert ae_rows["severity_case"]["AESEV"] == "MODERATE"


def test_exact_duplicates_collapsed_and_counted(ae_rows: dict[str, Row]) -> None:
    """Three identical rows become the first of them, counting two collapsed duplicates."""
    assert {label for label in ae_rows if label.startswith("dup_")} == {"dup_first"}
    assert ae_rows["dup_first"]["_duplicates_collapsed"] == 2
    assert ae_rows["dup_first"]["_reject_reasons"] == []
    collapsed = {
        label: row["_duplicates_collapsed"]
        for label, row in ae_rows.items()
        if row["_duplicates_collapsed"]
    }
    assert collapsed == {"dup_first": 2}
    assert set(ae_rows) == {label for label, _ in AE_CASES} - {"dup_second", "dup_third"}


def test_natural_key(ae_rows: dict[str, Row]) -> None:
    """Rows sharing a key with different values, or lacking a key part, are quarantined."""
    assert with_reason(ae_rows, "natural_key") == {
        "conflict_a",
        "conflict_b",
        "no_subject",
        "seq_fraction",
        "seq_abc",
        "seq_xyz",
    }
    for label in ("conflict_a", "conflict_b"):
        assert ae_rows[label]["_reject_reasons"] == ["natural_key"]
        assert ae_rows[label]["_reject_details"] == [
            f"natural_key: natural key {SUBJECT}/31 is shared by 2 differing rows"
        ]
    assert ae_rows["no_subject"]["_reject_reasons"] == ["natural_key", "subject_in_dm"]
    assert ae_rows["no_subject"]["_reject_details"][0] == (
        "natural_key: natural key <missing>/32 has a missing part"
    )
    assert ae_rows["seq_fraction"]["_reject_reasons"] == ["castable", "natural_key"]
    assert ae_rows["seq_fraction"]["_reject_details"][1] == (
        f"natural_key: natural key {SUBJECT}/<missing> has a missing part"
    )


def test_different_bad_numbers_are_not_collapsed(ae_rows: dict[str, Row]) -> None:
    """AESEQ "abc" and "xyz" both became null, yet they are different rows: both stay."""
    for label, text in (("seq_abc", "abc"), ("seq_xyz", "xyz")):
        row = ae_rows[label]
        assert row["AESEQ"] is None
        assert row["_duplicates_collapsed"] == 0
        assert row["_reject_reasons"] == ["castable", "natural_key"]
        assert row["_reject_details"][0] == f"castable: AESEQ='{text}' is not an integer"


# ---------------------------------------------------------------------------- VS and LB rules


@pytest.fixture(scope="module")
def vs_rows(spark: SparkSession) -> dict[str, Row]:
    cases: list[Case] = [
        ("normal", {"VSSEQ": "1", "VSSTRESN": "120"}),
        ("too_high", {"VSSEQ": "2", "VSSTRESN": "301"}),
        ("at_high", {"VSSEQ": "3", "VSSTRESN": "300"}),
        ("at_low", {"VSSEQ": "4", "VSSTRESN": "40"}),
        ("too_low", {"VSSEQ": "5", "VSSTRESN": "39.9"}),
        ("lower_case_unit", {"VSSEQ": "6", "VSSTRESN": "500", "VSSTRESU": "MMHG"}),
        ("no_unit", {"VSSEQ": "7", "VSSTRESN": "500", "VSSTRESU": ""}),
        ("wrong_unit", {"VSSEQ": "8", "VSSTRESN": "500", "VSSTRESU": "kg"}),
        ("temp_hot", {"VSSEQ": "9", "VSTESTCD": "TEMP", "VSSTRESN": "50", "VSSTRESU": "C"}),
        (
            "temp_fahrenheit",
            {"VSSEQ": "10", "VSTESTCD": "TEMP", "VSSTRESN": "98.6", "VSSTRESU": "F"},
        ),
        ("unknown_test", {"VSSEQ": "11", "VSTESTCD": "GRIP", "VSSTRESN": "9000", "VSSTRESU": "N"}),
    ]
    return evaluate_cases(spark, VS, VS_BASE, cases, context_with_dm(spark))


def test_plausible_range(vs_rows: dict[str, Row]) -> None:
    """Standard-unit results outside the test's range (bounds inclusive) are quarantined."""
    assert with_reason(vs_rows, "plausible_range") == {
        "too_high",
        "too_low",
        "lower_case_unit",
        "no_unit",
        "temp_hot",
    }
    assert vs_rows["too_high"]["_reject_details"] == [
        "plausible_range: VSSTRESN=301.0 mmHg is outside the plausible range 40-300 for SYSBP"
    ]


def test_non_standard_unit_is_not_range_checked_but_flagged(vs_rows: dict[str, Row]) -> None:
    """500 kg of blood pressure is not judged against mmHg limits; the unit gets a flag."""
    wrong = vs_rows["wrong_unit"]
    assert wrong["_reject_reasons"] == []
    assert wrong["_flags"] == ["terminology"]
    assert wrong["_flag_details"] == [
        ("terminology: VSSTRESU='kg' is not the standard unit 'mmHg' of SYSBP")
    ]
    assert with_flag(vs_rows, "terminology") == {"wrong_unit", "temp_fahrenheit", "unknown_test"}
    assert vs_rows["unknown_test"]["_flag_details"] == [
        "terminology: VSTESTCD='GRIP' is not in its controlled terminology"
    ]
    assert vs_rows["lower_case_unit"]["VSSTRESU"] == "mmHg"


def test_reference_range_flags_lab_results(spark: SparkSession) -> None:
    """Results outside the lab's own range are flagged, never quarantined; with one limit
    missing only the other side is checked."""
    cases: list[Case] = [
        ("inside", {"LBSEQ": "1", "LBSTRESN": "30", "LBSTNRLO": "5", "LBSTNRHI": "40"}),
        ("above", {"LBSEQ": "2", "LBSTRESN": "41", "LBSTNRLO": "5", "LBSTNRHI": "40"}),
        ("below", {"LBSEQ": "3", "LBSTRESN": "4", "LBSTNRLO": "5", "LBSTNRHI": "40"}),
        ("no_low", {"LBSEQ": "4", "LBSTRESN": "1", "LBSTNRHI": "40"}),
        ("no_high_below", {"LBSEQ": "5", "LBSTRESN": "1", "LBSTNRLO": "5"}),
        ("no_high_above", {"LBSEQ": "6", "LBSTRESN": "400", "LBSTNRLO": "5"}),
        ("no_result", {"LBSEQ": "7", "LBSTNRLO": "5", "LBSTNRHI": "40"}),
    ]
    rows = evaluate_cases(spark, LB, LB_BASE, cases, context_with_dm(spark))
    assert with_flag(rows, "reference_range") == {"above", "below", "no_high_below"}
    assert rows["above"]["_flag_details"] == [
        "reference_range: LBSTRESN=41.0 is outside its reference range 5.0-40.0"
    ]
    assert rows["no_high_below"]["_flag_details"] == [
        "reference_range: LBSTRESN=1.0 is outside its reference range 5.0-"
    ]
    assert all(row["_reject_reasons"] == [] for row in rows.values())


# ---------------------------------------------------------------------------- DM


def test_dm_unavailable_quarantines_every_row_with_the_reason(spark: SparkSession) -> None:
    """Without DM no subject can be verified: every row is quarantined saying why."""
    cases: list[Case] = [("first", {"AESEQ": "1"}), ("second", {"AESEQ": "2"})]
    context = EvaluationContext(STUDY, TODAY, None, "dm.xpt was rejected: truncated")
    rows = evaluate_cases(spark, AE, AE_BASE, cases, context)
    assert {
        label: (row["_reject_reasons"], row["_reject_details"]) for label, row in rows.items()
    } == {
        label: (
            ["subject_in_dm"],
            ["subject_in_dm: USUBJID cannot be verified: dm.xpt was rejected: truncated"],
        )
        for label in ("first", "second")
    }


def test_dm_needs_no_dm_and_normalises_sex(spark: SparkSession) -> None:
    """DM is not checked against DM; SEX "m" becomes "M", unknown values stay and are flagged."""
    base = {
        "STUDYID": STUDY,
        "DOMAIN": "dm",
        "SUBJID": "001",
        "SITEID": 701.0,
        "ARMCD": "PBO",
        "ARM": "Placebo",
    }
    cases: list[Case] = [
        ("lower", {"USUBJID": "S01-001", "SEX": "m"}),
        ("padded", {"USUBJID": "S01-002", "SEX": "f  "}),
        ("word", {"USUBJID": "S01-003", "SEX": "Undifferentiated"}),
        ("unknown", {"USUBJID": "S01-004", "SEX": "X"}),
        ("leading_blank", {"USUBJID": "S01-005", "SEX": " F"}),
    ]
    rows = evaluate_cases(
        spark, DM, base, cases, EvaluationContext(STUDY, TODAY, None), types={"SITEID": "double"}
    )
    assert {label: row["SEX"] for label, row in rows.items()} == {
        "lower": "M",
        "padded": "F",
        "word": "UNDIFFERENTIATED",
        "unknown": "X",
        "leading_blank": " F",
    }
    assert all(row["_reject_reasons"] == [] for row in rows.values())
    assert with_flag(rows, "terminology") == {"unknown", "leading_blank"}
    assert {(row["SITEID"], row["DOMAIN"]) for row in rows.values()} == {("701", "DM")}


# ---------------------------------------------------------------------------- values kept exactly

BLANK_CASES: list[Case] = [
    ("leading", {"AESEQ": "1", "AETERM": " HEADACHE"}),
    ("trailing", {"AESEQ": "2", "AETERM": "HEADACHE   "}),
    ("inner", {"AESEQ": "3", "AETERM": "  SORE  THROAT  "}),
    ("all_blank", {"AESEQ": "4", "AESPID": "   "}),
    ("empty", {"AESEQ": "5", "AESPID": ""}),
    ("tab", {"AESEQ": "6", "AETERM": "NAUSEA\t"}),
    ("blank_number", {"AESEQ": " 7  "}),
    ("padded_code", {"AESEQ": "8", "AESEV": "mild   ", "STUDYID": f"{STUDY}  "}),
    ("leading_code", {"AESEQ": "9", "AESEV": " MILD"}),
    ("padded_date", {"AESEQ": "10", "AESTDTC": "2014-02-10   "}),
    ("leading_date", {"AESEQ": "11", "AESTDTC": " 2014-02-10"}),
    ("padded_long", {"AESEQ": "12", "AEACN": "x" * 200 + "  "}),
    ("leading_long", {"AESEQ": "13", "AEACN": " " + "x" * 200}),
    ("leading_study", {"AESEQ": "14", "STUDYID": f" {STUDY}"}),
]


@pytest.fixture(scope="module")
def blank_rows(spark: SparkSession) -> dict[str, Row]:
    """AE rows with leading, trailing, inner and only blanks, evaluated in one pass."""
    return evaluate_cases(spark, AE, AE_BASE, BLANK_CASES, context_with_dm(spark))


def test_leading_blanks_are_kept(blank_rows: dict[str, Row]) -> None:
    """Leading and inner blanks are data: the value is curated exactly as delivered."""
    assert blank_rows["leading"]["AETERM"] == " HEADACHE"
    assert blank_rows["inner"]["AETERM"] == "  SORE  THROAT"
    assert blank_rows["tab"]["AETERM"] == "NAUSEA\t"  # SAS pads with blanks, not tabs
    assert all(blank_rows[c]["_reject_reasons"] == [] for c in ("leading", "inner", "tab"))


def test_trailing_blanks_are_padding(blank_rows: dict[str, Row]) -> None:
    """Trailing blanks are SAS padding: removed before typing, terminology and every rule."""
    assert blank_rows["trailing"]["AETERM"] == "HEADACHE"
    assert blank_rows["blank_number"]["AESEQ"] == 7
    padded = blank_rows["padded_code"]
    assert (padded["AESEV"], padded["STUDYID"]) == ("MILD", STUDY)
    assert blank_rows["padded_date"]["AESTDTC"] == "2014-02-10"
    assert blank_rows["padded_long"]["AEACN"] == "x" * 200
    for label in ("trailing", "blank_number", "padded_code", "padded_date", "padded_long"):
        assert (blank_rows[label]["_reject_reasons"], blank_rows[label]["_flags"]) == ([], [])


@pytest.mark.parametrize("label", ["all_blank", "empty"])
def test_all_blank_text_is_null(blank_rows: dict[str, Row], label: str) -> None:
    """A value of blanks only is absent, like an empty one."""
    assert blank_rows[label]["AESPID"] is None
    assert blank_rows[label]["_reject_reasons"] == []


def test_rules_see_leading_blanks(blank_rows: dict[str, Row]) -> None:
    """Rules judge the value as curated: a leading blank counts, so " MILD" is not MILD."""
    assert blank_rows["leading_code"]["AESEV"] == " MILD"
    assert blank_rows["leading_code"]["_flag_details"] == [
        "terminology: AESEV=' MILD' is not in its controlled terminology"
    ]
    assert blank_rows["leading_date"]["_reject_details"] == [
        "iso8601: AESTDTC=' 2014-02-10' is not an ISO 8601 date/time"
    ]
    assert blank_rows["leading_long"]["_reject_details"] == [
        "max_length: AEACN has 201 characters, at most 200 allowed"
    ]
    assert blank_rows["leading_study"]["_reject_reasons"] == ["study_matches"]


# ---------------------------------------------------------------------------- known bugs


def test_same_values_spelled_differently_are_duplicates(spark: SparkSession) -> None:
    """SV rows that conform to identical values (VISITNUM rounds to 9.3) are one visit."""
    cases: list[Case] = [("noisy", {"VISITNUM": 9.299999999999999}), ("exact", {"VISITNUM": 9.3})]
    rows = evaluate_cases(
        spark, SV, SV_BASE, cases, context_with_dm(spark), types={"VISITNUM": "double"}
    )
    assert {
        label: (row["_duplicates_collapsed"], row["_reject_reasons"]) for label, row in rows.items()
    } == {"noisy": (1, [])}


def test_values_in_different_columns_are_not_duplicates(spark: SparkSession) -> None:
    """Same key, 'x' moved from one column to another: a conflict, not a duplicate.

    Spark's hash functions skip nulls, so without hashing nullness these two rows looked alike.
    """
    cases: list[Case] = [
        ("term_only", {"AESEQ": "7", "AETERM": "NAUSEA", "AEDECOD": None}),
        ("decod_only", {"AESEQ": "7", "AETERM": None, "AEDECOD": "NAUSEA"}),
    ]
    rows = evaluate_cases(spark, AE, AE_BASE, cases, context_with_dm(spark))
    assert sorted(rows) == ["decod_only", "term_only"]
    assert all(row["_duplicates_collapsed"] == 0 for row in rows.values())
    assert all("natural_key" in row["_reject_reasons"] for row in rows.values())


def test_end_before_start_ignores_zone_designator(spark: SparkSession) -> None:
    """An end 45 seconds after its start, both in UTC, is not before the start."""
    cases: list[Case] = [
        ("utc", {"AESEQ": "1", "AESTDTC": "2014-02-10T10:30Z", "AEENDTC": "2014-02-10T10:30:45Z"}),
        ("hour", {"AESEQ": "2", "AESTDTC": "2014-02-10T10Z", "AEENDTC": "2014-02-10T10:30Z"}),
    ]
    rows = evaluate_cases(spark, AE, AE_BASE, cases, context_with_dm(spark))
    assert with_flag(rows, "end_before_start") == set()


# ---------------------------------------------------------------------------- study overrides


def test_study_override_moves_terminology_to_quarantine(spark: SparkSession) -> None:
    """A study that quarantines terminology sends the row to reasons instead of flags."""
    strict = AE.with_effects({"terminology": Effect.QUARANTINE, "end_before_start": Effect.OFF})
    cases: list[Case] = [
        (
            "unknown",
            {"AESEQ": "1", "AESEV": "VERY BAD", "AESTDTC": "2014-02-10", "AEENDTC": "2014-01"},
        )
    ]
    rows = evaluate_cases(spark, strict, AE_BASE, cases, context_with_dm(spark))
    unknown = rows["unknown"]
    assert unknown["_reject_reasons"] == ["terminology"]
    assert unknown["_reject_details"] == [
        ("terminology: AESEV='VERY BAD' is not in its controlled terminology")
    ]
    assert unknown["_flags"] == []  # end_before_start is switched off for this study


def test_configured_study_override_applies() -> None:
    """LEGACY01's configured override turns AE terminology into an informational flag."""
    assert contract_for("ae", "LEGACY01").rule("terminology").effect is Effect.FLAG
    assert contract_for("ae", STUDY).rule("terminology").effect is Effect.WARN


@pytest.mark.parametrize(
    ("rule", "effect"),
    [
        ("reconciliation", Effect.WARN),
        ("files_readable", Effect.OFF),
        ("required_columns", Effect.QUARANTINE),
        ("castable", Effect.BLOCK),
        ("terminology", Effect.REJECT_FILE),
    ],
)
def test_blocking_rules_cannot_be_changed(rule: str, effect: Effect) -> None:
    """Neither relaxing a blocking rule nor making a row rule blocking is allowed per study."""
    with pytest.raises(ValueError, match=f"ae.{rule}: a study may not change a blocking rule"):
        AE.with_effects({rule: effect})


def test_unknown_override_is_refused() -> None:
    """A misspelt rule name in a study override is an error, not silently ignored."""
    with pytest.raises(KeyError, match="unknown rules"):
        AE.with_effects({"terminologie": Effect.OFF})


@pytest.mark.parametrize(
    ("bounded", "as_json"),
    [
        pytest.param(
            True,
            False,
            id="min_by_k",
            marks=pytest.mark.skipif(
                tuple(int(p) for p in pyspark.__version__.split(".")[:2]) < (4, 2),
                reason="min_by with k exists from Spark 4.2",
            ),
        ),
        pytest.param(False, False, id="collect_sort_slice"),
        pytest.param(False, True, id="as_json"),
    ],
)
def test_rule_metrics_count_and_give_the_smallest_failing_keys(
    spark: SparkSession, bounded: bool, as_json: bool
) -> None:
    """Counts and examples of the observed metrics, on Spark >= 4.2 and on older Spark alike."""
    full = [(label, {**AE_BASE, **values}) for label, values in AE_CASES]
    raw, source_types = raw_frame(spark, full)
    evaluated = evaluate(raw, AE, source_types, context_with_dm(spark))
    summary = evaluated.agg(*rule_metrics(AE, 2, bounded=bounded, as_json=as_json)).first()
    assert summary is not None
    result = summary.asDict(recursive=True)
    reasons = evaluated.selectExpr("_reject_reasons", "_flags", f"{key_text(AE)} AS key").collect()
    for rule in row_rules(AE):
        failing = sorted(
            r["key"] for r in reasons if rule.name in r["_reject_reasons"] + r["_flags"]
        )
        assert result[rule.name] == len(failing), rule.name
        examples = examples_of(result[examples_column(rule.name)])
        assert [e["key"] for e in examples] == failing[:2], rule.name
        assert all(d.startswith(f"{rule.name}: ") for e in examples for d in e["details"])
    assert result["rejected"] == sum(1 for r in reasons if r["_reject_reasons"])
    assert result["collapsed"] == 2  # three identical events kept once
