"""Level 1: the curate job's steps on a few rows: gates, rule checks, frames, balance, volume."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pyspark.sql import SparkSession

from spark_jobs import curate
from spark_jobs.contracts import contract_for
from spark_jobs.contracts.layout import Delivery, Zone
from spark_jobs.contracts.outputs import output
from spark_jobs.quality.evaluate import evaluate
from spark_jobs.quality.metrics import masked_details, rule_metrics
from spark_jobs.quality.rule_sql import EvaluationContext

SV = contract_for("sv", "S01")
RAW_KEY = "raw_sv"


def test_no_raw_partition_blocks_curation() -> None:
    outcomes, reason = curate.gate_checks(SV, None, RAW_KEY, "S01/2024-01-15")
    assert reason == "raw_sv has not been materialized for S01/2024-01-15"
    assert [(o.name, o.passed, o.blocking) for o in outcomes] == [("files_readable", False, True)]


def test_a_rejected_raw_partition_blocks_with_its_reason() -> None:
    lineage = {
        "status": "rejected",
        "reason": "sv.xpt: truncated",
        "sources": [{"name": "sv.xpt", "accepted": False}],
    }
    outcomes, reason = curate.gate_checks(SV, lineage, RAW_KEY, "S01/2024-01-15")
    assert reason == "sv.xpt: truncated"
    assert outcomes[0].metadata["rejected_files"] == [{"name": "sv.xpt", "accepted": False}]


def test_missing_required_columns_block_after_files_are_readable() -> None:
    lineage = {
        "status": "accepted",
        "sources": [{"name": "sv.csv", "columns": ["STUDYID", "DOMAIN"]}],
    }
    outcomes, reason = curate.gate_checks(SV, lineage, RAW_KEY, "S01/2024-01-15")
    assert [(o.name, o.passed) for o in outcomes] == [
        ("files_readable", True),
        ("required_columns", False),
    ]
    assert reason == "sv.csv lacks required column(s) USUBJID, VISITNUM"
    assert outcomes[1].metadata["missing"] == {"sv.csv": ["USUBJID", "VISITNUM"]}


def test_a_complete_raw_partition_passes_both_gates() -> None:
    lineage = {
        "status": "accepted",
        "sources": [{"name": "sv.xpt", "columns": list(SV.column_names)}],
    }
    outcomes, reason = curate.gate_checks(SV, lineage, RAW_KEY, "S01/2024-01-15")
    assert reason is None and all(o.passed for o in outcomes)
    assert outcomes[1].metadata["required"] == list(SV.required_columns)


def test_reconciliation_needs_the_balance_and_the_quarantine_found() -> None:
    balanced = curate.reconciliation(SV, curate.Balance(10, 7, 2, 2, 1))
    assert balanced.passed and balanced.blocking
    assert dict(balanced.metadata) == {
        "effect": "block",
        "raw_rows": 10,
        "curated_rows": 7,
        "quarantined_rows": 2,
        "collapsed_duplicates": 1,
    }
    assert not curate.reconciliation(SV, curate.Balance(10, 7, 2, 3, 1)).passed
    assert not curate.reconciliation(SV, curate.Balance(11, 7, 2, 2, 1)).passed


@pytest.mark.parametrize(
    ("rows", "previous", "passed", "change"),
    [
        (100, None, True, None),
        (140, ("2024-01-01", 100), True, 0.4),
        (160, ("2024-01-01", 100), False, 0.6),
        (40, ("2024-01-01", 100), False, -0.6),
    ],
)
def test_volume_against_the_previous_delivery(
    rows: int, previous: tuple[str, int] | None, passed: bool, change: float | None
) -> None:
    found = curate.volume(SV, rows, previous)
    assert (found.passed, found.blocking) == (passed, False)
    assert found.metadata.get("change_fraction") == change


# ---------------------------------------------------------------------------- the frames

ROWS: list[dict[str, Any]] = [
    {"VISITNUM": "1", "VISIT": "SCREENING", "SVSTDTC": "2024-01-02"},
    {"VISITNUM": "2", "VISIT": "WEEK 2", "SVSTDTC": "2024-13-40"},  # not a date: quarantined
    {"VISITNUM": "3", "VISIT": "WEEK 4", "SVSTDTC": "2024-02"},  # partial date: kept
    {"VISITNUM": "3", "VISIT": "WEEK 4", "SVSTDTC": "2024-02"},  # exact duplicate: collapsed
]


@pytest.fixture(scope="module")
def evaluated(spark: SparkSession):
    schema = "STUDYID string, DOMAIN string, USUBJID string, VISITNUM string, VISIT string, "
    schema += "SVSTDTC string, _source_uri string, _source_row bigint, _source_sha256 string, "
    schema += "_delivery string, _ingested_run_id string"
    data = [
        ("S01", "SV", "S01-001", r["VISITNUM"], r["VISIT"], r["SVSTDTC"], "u", i, "h", "d", "r")
        for i, r in enumerate(ROWS, start=1)
    ]
    raw = spark.createDataFrame(data, schema)
    types = {c: "string" for c in ("STUDYID", "DOMAIN", "USUBJID", "VISITNUM", "VISIT", "SVSTDTC")}
    dm = spark.createDataFrame([("S01-001",)], "USUBJID string")
    context = EvaluationContext("S01", dt.date(2024, 6, 1), dm)
    return evaluate(raw, SV, types, context).cache()


def test_curated_frame_is_the_declared_schema_of_the_rows_kept(evaluated) -> None:
    frame = curate.curated_frame(evaluated, SV, "run-9", Delivery("S01", "2024-02-01"))
    assert frame.columns == list(output(Zone.CURATED, "sv").column_names)
    rows = sorted(frame.collect(), key=lambda r: r["VISITNUM"])
    assert [(r["VISITNUM"], r["SVSTDTC_DATE"], r["SVSTDTC_PRECISION"]) for r in rows] == [
        (1.0, dt.date(2024, 1, 2), "day"),
        (3.0, None, "month"),
    ]
    assert [r["_duplicates_collapsed"] for r in rows] == [0, 1]
    assert {r["_curated_run_id"] for r in rows} == {"run-9"}
    assert {(r["study"], r["delivery"]) for r in rows} == {("S01", "2024-02-01")}


def test_quarantine_frame_keeps_raw_values_and_reasons(evaluated) -> None:
    data_columns = ["STUDYID", "DOMAIN", "USUBJID", "VISITNUM", "VISIT", "SVSTDTC"]
    frame = curate.quarantine_frame(evaluated, SV, data_columns, "run-9")
    declared = output(Zone.QUARANTINE, "sv").columns
    assert [c.name for c in declared if c.name in frame.columns] == frame.columns
    # The partition columns are added when the frame is shaped to the table.
    fixed = [c.name for c in declared if not c.delivered]
    assert [c for c in fixed if c not in frame.columns] == ["study", "delivery"]
    (row,) = frame.collect()
    assert (row["VISITNUM"], row["SVSTDTC"], row["_natural_key"]) == (
        "2",
        "2024-13-40",
        "S01-001/2.0",
    )
    assert row["_reject_reasons"] == ["iso8601"]
    assert row["_reject_details"] == ["iso8601: SVSTDTC='2024-13-40' is not an ISO 8601 date/time"]


def test_rule_checks_from_the_metrics_of_the_pass(evaluated) -> None:
    row = evaluated.agg(*rule_metrics(SV, curate.EXAMPLES)).first()
    assert row is not None
    summary = row.asDict(recursive=True)
    assert (summary["rows"], summary["collapsed"], summary["rejected"]) == (3, 1, 1)
    outcomes = {o.name: o for o in curate.rule_checks(SV, summary)}
    duplicates = outcomes["exact_duplicates"]
    assert (duplicates.passed, dict(duplicates.metadata)) == (
        False,
        {"effect": "collapse", "collapsed_rows": 1, "rows_kept": 3},
    )
    iso = outcomes["iso8601"]
    # Examples name the row by file and number, never by its subject (S01-001/2.0).
    assert (iso.passed, iso.metadata["failing_rows"], iso.metadata["examples"]) == (
        False,
        1,
        ["u row 2"],
    )
    assert "S01-001" not in str(dict(iso.metadata))
    assert iso.metadata["failing_fraction"] == round(1 / 3, 6)
    assert outcomes["castable"].passed and outcomes["castable"].metadata["failing_rows"] == 0


def test_reported_details_name_no_subject() -> None:
    example = {
        "details": [
            "natural_key: natural key 01-701-1015/3 is shared by 2 differing rows",
            "subject_in_dm: USUBJID='01-701-1015 ' is not in DM of this delivery",
        ],
        "subjects": ["01-701-1015 ", None],
    }
    assert masked_details(example) == [
        "natural_key: natural key <subject>/3 is shared by 2 differing rows",
        "subject_in_dm: USUBJID='<subject>' is not in DM of this delivery",
    ]
