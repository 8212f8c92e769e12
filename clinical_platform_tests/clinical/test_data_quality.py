"""Level 2: data-quality rules on deliveries broken on purpose (issue 5).

The deliveries are built from the CDISC pilot files: rows duplicated, keys made to conflict,
dates broken, subjects orphaned, vitals made implausible, a column dropped, STUDYID changed.
Every number asserted here follows from those edits.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from clinical_platform.clinical.assets import CLINICAL_ASSETS
from clinical_platform.definitions import resources_for
from clinical_platform.generators import xport_writer
from clinical_platform.lake import rejected_files
from clinical_platform_tests.helpers import (
    checks,
    current_data_files,
    land,
    lineage,
    materializations,
    materialize,
    metadata_value,
    read_table,
    table_exists,
)
from spark_jobs.contracts import sdtm_contract
from spark_jobs.contracts.layout import Delivery, LakeLayout
from spark_jobs.contracts.outputs import Zone, output, schema_differences
from spark_jobs.formats import xport
from spark_jobs.formats.rows import format_number

pytestmark = pytest.mark.slow

FIRST = Delivery("CDISCPILOT01", "2024-01-15")
SECOND = Delivery("CDISCPILOT01", "2024-02-15")


@dataclass
class Table:
    """An XPORT file as variables plus mutable rows."""

    name: str
    variables: list[tuple[str, str, int, str]]
    rows: list[list[Any]]

    @classmethod
    def read(cls, path: Path) -> Table:
        data = path.read_bytes()
        layout = xport.inspect(data)
        variables = [(v.name, v.kind, v.length, v.label) for v in layout.header.variables]
        return cls(
            layout.header.dataset_name, variables, [list(r) for r in xport.iter_rows(data, layout)]
        )

    def index(self, column: str) -> int:
        return [v[0] for v in self.variables].index(column)

    def set(self, row: int, column: str, value: Any) -> None:
        self.rows[row][self.index(column)] = value

    def get(self, row: int, column: str) -> Any:
        return self.rows[row][self.index(column)]

    def drop(self, column: str) -> None:
        position = self.index(column)
        del self.variables[position]
        for row in self.rows:
            del row[position]

    def add(self, column: str, value: str) -> None:
        self.variables.append((column, "char", 1, column.title()))
        for row in self.rows:
            row.append(value)

    def write_xpt(self, path: Path) -> None:
        variables = []
        for i, (name, kind, _, label) in enumerate(self.variables):
            width = (
                8
                if kind == "numeric"
                else max([1, *[len(str(r[i]).encode("latin-1")) for r in self.rows]])
            )
            variables.append((name, kind, width, label))
        with path.open("wb") as out:
            xport_writer.write_xport(out, self.name, variables, self.rows)

    def write_csv(self, path: Path) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([v[0] for v in self.variables])
        for row in self.rows:
            writer.writerow(
                ["" if v is None else format_number(v) if isinstance(v, float) else v for v in row]
            )
        path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))  # with a BOM


def rows_where(table: Table, column: str, value: str, count: int, skip: set[int]) -> list[int]:
    found = [
        i for i, r in enumerate(table.rows) if r[table.index(column)] == value and i not in skip
    ]
    return found[:count]


def write_single_parquet(spark: Any, table: Table, path: Path) -> None:
    """One Parquet file (not a Spark folder) holding the table, as a CRO would send it."""
    from pyspark.sql import types as T

    fields = [
        T.StructField(name, T.DoubleType() if kind == "numeric" else T.StringType())
        for name, kind, _, _ in table.variables
    ]
    folder = path.with_suffix(".parts")
    spark.createDataFrame(table.rows, T.StructType(fields)).coalesce(1).write.parquet(str(folder))
    shutil.copyfile(next(folder.glob("part-*.parquet")), path)
    shutil.rmtree(folder)


def broken_first_delivery(pilot: Path, folder: Path, spark: Any) -> None:
    """The pilot with quarantine-level defects in AE, VS, DS (as CSV) and SV (as Parquet with
    an extra column); nothing that blocks."""
    folder.mkdir(parents=True)
    for name in ("dm.xpt", "lbch.xpt", "lbhe.xpt", "ex.xpt"):
        shutil.copyfile(pilot / name, folder / name)

    ae = Table.read(pilot / "ae.xpt")
    for i in range(0, 5):  # 5 exact duplicates
        ae.rows.append(list(ae.rows[i]))
    for i in (10, 11, 12):  # 3 conflicting copies: same key, different term
        copy = list(ae.rows[i])
        copy[ae.index("AETERM")] = "CONFLICTING TERM"
        ae.rows.append(copy)
    for i in (20, 21, 22, 23):
        ae.set(i, "AESTDTC", "2014-13-45")
    ae.set(30, "USUBJID", "99-999-0001")
    ae.set(31, "USUBJID", "99-999-0002")
    ae.set(40, "STUDYID", "OTHERSTUDY")
    for i in (50, 51):
        ae.set(i, "AESTDTC", "2014-01-10")
        ae.set(i, "AEENDTC", "2014-01-05")
    ae.set(60, "AESEV", "EXTREME")
    ae.set(70, "AESER", "YES")
    ae.set(80, "AESTDTC", "2099-05")
    ae.set(80, "AEENDTC", "")
    ae.write_xpt(folder / "ae.xpt")

    vs = Table.read(pilot / "vs.xpt")
    used: set[int] = set()
    sysbp = rows_where(vs, "VSTESTCD", "SYSBP", 3, used)
    pulse = rows_where(vs, "VSTESTCD", "PULSE", 2, used)
    temp = rows_where(vs, "VSTESTCD", "TEMP", 2, used)
    for i in sysbp:
        vs.set(i, "VSSTRESN", 400.0)
    for i in pulse:
        vs.set(i, "VSSTRESN", 10.0)
    vs.set(temp[0], "VSDTC", "2099-01-01")
    vs.set(temp[1], "VSSTRESU", "F")
    vs.set(temp[1], "VSSTRESN", 98.6)
    vs.write_xpt(folder / "vs.xpt")

    ds = Table.read(pilot / "ds.xpt")
    ds.set(0, "DSSEQ", "x1")
    ds.set(1, "DSSEQ", "x2")
    ds.write_csv(folder / "ds.csv")

    sv = Table.read(pilot / "sv.xpt")
    sv.add("SVNOTE", "n")
    write_single_parquet(spark, sv, folder / "sv.parquet")


def broken_second_delivery(pilot: Path, folder: Path) -> None:
    """A later delivery: DM shrunk to 100 subjects (volume), AE without USUBJID (blocking)."""
    folder.mkdir(parents=True)
    dm = Table.read(pilot / "dm.xpt")
    dm.rows = dm.rows[:100]
    dm.write_xpt(folder / "dm.xpt")
    ae = Table.read(pilot / "ae.xpt")
    ae.drop("USUBJID")
    ae.write_xpt(folder / "ae.xpt")


@dataclass
class QualityRuns:
    lake: Path
    instance: dg.DagsterInstance
    first: dg.ExecuteInProcessResult
    second: dg.ExecuteInProcessResult


@pytest.fixture(scope="module")
def runs(pilot_dir: Path, tmp_path_factory: pytest.TempPathFactory, spark: Any) -> QualityRuns:
    base = tmp_path_factory.mktemp("quality")
    broken_first_delivery(pilot_dir, base / "first", spark)
    broken_second_delivery(pilot_dir, base / "second")
    lake = base / "lake"
    land(base / "first", FIRST, lake)
    land(base / "second", SECOND, lake)
    instance = dg.DagsterInstance.ephemeral()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLINICAL_PSEUDONYM_KEY", "test-key")
        first = materialize(lake, FIRST, instance=instance)
        second = materialize(
            lake,
            SECOND,
            instance=instance,
            selection=["raw_dm", "raw_ae", "curated_dm", "curated_ae", "features_subject_profile"],
        )
    return QualityRuns(lake, instance, first, second)


def quarantine_reasons(spark: Any, lake: Path, domain: str) -> Counter[str]:
    rows = read_table(spark, lake, "quarantine", domain, FIRST).collect()
    return Counter(reason for row in rows for reason in row["_reject_reasons"])


def failing(evaluation: dg.AssetCheckEvaluation) -> int:
    return evaluation.metadata["failing_rows"].value  # pyright: ignore[reportReturnType]


# Rows of the broken AE delivery quarantined, by reason (a row has one reason here).
AE_QUARANTINED = {
    "natural_key": 6,
    "iso8601": 4,
    "subject_in_dm": 2,
    "study_matches": 1,
    "max_length": 1,
    "future_date": 1,
}


def test_adverse_events_quarantine_by_reason(runs: QualityRuns, spark: Any) -> None:
    curated = materializations(runs.first)["curated_ae"]
    assert metadata_value(curated, "rows_in") == 961 + 5 + 3
    assert metadata_value(curated, "duplicates_collapsed") == 5
    assert metadata_value(curated, "rows_quarantined") == 15
    assert metadata_value(curated, "dagster/row_count") == 969 - 5 - 15
    assert quarantine_reasons(spark, runs.lake, "ae") == AE_QUARANTINED


def test_adverse_event_check_outcomes(runs: QualityRuns) -> None:
    results = {name: e for (asset, name), e in checks(runs.first).items() if asset == "curated_ae"}
    expected_failing = {
        **AE_QUARANTINED,
        "end_before_start": 2,
        "terminology": 2,
        "castable": 0,
    }
    for name, count in expected_failing.items():
        assert failing(results[name]) == count, name
        assert results[name].passed is (count == 0), name
        assert results[name].severity == dg.AssetCheckSeverity.WARN
    # Examples come from the pass that writes curated: at most five (smallest keys), each
    # detail from the rule's own list, for quarantining and warning rules alike. They name
    # rows by file and number and mask subjects: no USUBJID reaches Dagster's event log.
    key_examples = metadata_value(results["natural_key"], "examples")
    assert len(key_examples) == 5 and all(re.fullmatch(r"ae\.xpt row \d+", k) for k in key_examples)
    key_details = metadata_value(results["natural_key"], "example_details")
    assert len(key_details) == 5 and all(d.startswith("natural_key: ") for d in key_details)
    assert all("<subject>" in d and "01-701-" not in d for d in key_details)
    late = metadata_value(results["end_before_start"], "example_details")
    assert len(metadata_value(results["end_before_start"], "examples")) == 2
    assert len(late) == 2 and all(d.startswith("end_before_start: AEENDTC=") for d in late)
    assert metadata_value(results["castable"], "examples") == []
    assert not results["exact_duplicates"].passed
    assert results["exact_duplicates"].metadata["collapsed_rows"].value == 5
    for name in ("files_readable", "required_columns", "schema_drift", "reconciliation", "volume"):
        assert results[name].passed, name
    reconciliation = {
        k: v.value
        for k, v in results["reconciliation"].metadata.items()
        if k.endswith("rows") or k.endswith("duplicates")
    }
    assert reconciliation == {
        "raw_rows": 969,
        "curated_rows": 949,
        "quarantined_rows": 15,
        "collapsed_duplicates": 5,
    }


def test_warned_rows_stay_in_curated_with_their_flags(runs: QualityRuns, spark: Any) -> None:
    curated = read_table(spark, runs.lake, "curated", "ae", FIRST)
    flagged = Counter(f for row in curated.select("_flags").collect() for f in row["_flags"])
    assert flagged == {"end_before_start": 2, "terminology": 1}
    collapsed = curated.where("_duplicates_collapsed > 0").count()
    assert collapsed == 5


def test_quarantined_rows_keep_source_values_and_every_reason(
    runs: QualityRuns, spark: Any
) -> None:
    quarantine = read_table(spark, runs.lake, "quarantine", "ae", FIRST)
    bad_dates = quarantine.where("AESTDTC = '2014-13-45'").collect()
    assert len(bad_dates) == 4
    assert all(r["_reject_reasons"] == ["iso8601"] for r in bad_dates)
    assert all(
        "iso8601: AESTDTC='2014-13-45' is not an ISO 8601 date/time" in r["_reject_details"]
        for r in bad_dates
    )
    assert {r["_source_row"] for r in bad_dates} == {21, 22, 23, 24}
    assert all(r["_source_uri"].endswith("/ae.xpt") for r in bad_dates)


def test_implausible_vitals_and_future_dates(runs: QualityRuns, spark: Any) -> None:
    assert quarantine_reasons(spark, runs.lake, "vs") == {"plausible_range": 5, "future_date": 1}
    curated = materializations(runs.first)["curated_vs"]
    assert metadata_value(curated, "dagster/row_count") == 29_643 - 6
    results = checks(runs.first)
    assert failing(results[("curated_vs", "terminology")]) == 1  # TEMP in F: flagged only


def test_csv_domain_with_unconvertible_numbers(runs: QualityRuns, spark: Any) -> None:
    raw = materializations(runs.first)["raw_ds"]
    assert [s["name"] for s in metadata_value(raw, "source_files")] == ["ds.csv"]
    assert metadata_value(raw, "dagster/row_count") == 596
    assert quarantine_reasons(spark, runs.lake, "ds") == {"castable": 2, "natural_key": 2}
    assert metadata_value(materializations(runs.first)["curated_ds"], "dagster/row_count") == 594


def test_parquet_domain_with_an_extra_column(runs: QualityRuns, spark: Any) -> None:
    raw = materializations(runs.first)["raw_sv"]
    assert [s["name"] for s in metadata_value(raw, "source_files")] == ["sv.parquet"]
    assert metadata_value(raw, "dagster/row_count") == 3_559
    rows = read_table(spark, runs.lake, "raw", "sv", FIRST)
    assert rows.agg({"_source_row": "min"}).first()[0] == 1
    assert rows.agg({"_source_row": "max"}).first()[0] == 3_559
    assert metadata_value(materializations(runs.first)["curated_sv"], "dagster/row_count") == 3_559
    drift = checks(runs.first)[("curated_sv", "schema_drift")]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    assert drift.metadata["unknown_columns"].value == ["SVNOTE"]
    raw = read_table(spark, runs.lake, "raw", "sv", FIRST)
    curated = read_table(spark, runs.lake, "curated", "sv", FIRST)
    assert "SVNOTE" in raw.columns and "SVNOTE" not in curated.columns


def test_warnings_do_not_stop_features(runs: QualityRuns, spark: Any) -> None:
    assert runs.first.success
    features = materializations(runs.first)["features_subject_profile"]
    assert metadata_value(features, "dagster/row_count") == 306
    profile = read_table(spark, runs.lake, "features", "subject_profile", FIRST)
    assert profile.agg({"ae_count": "sum"}).first()[0] == 949


def test_reconciliation_holds_for_every_curated_partition(runs: QualityRuns) -> None:
    for domain in ("dm", "ae", "vs", "lb", "ex", "ds", "sv"):
        rows = lineage(runs.lake, "curated", domain, FIRST)["rows"]
        assert rows["in"] == rows["out"] + rows["quarantined"] + rows["collapsed"], domain


def test_missing_required_column_blocks_features(runs: QualityRuns) -> None:
    found = materializations(runs.second)
    assert "curated_ae" not in found and "features_subject_profile" not in found
    required = checks(runs.second)[("curated_ae", "required_columns")]
    assert not required.passed and required.blocking
    assert required.severity == dg.AssetCheckSeverity.ERROR
    assert required.metadata["reason"].value == "ae.xpt lacks required column(s) USUBJID"
    # Curated AE yields nothing, so Dagster skips features, which read it; the other domains
    # of the delivery commit, and no step fails.
    steps = runs.second.all_events
    assert [e.step_key for e in steps if e.is_step_skipped] == ["clinical_features"]
    assert [e.step_key for e in steps if e.is_step_success] == ["clinical_raw", "clinical_curated"]
    assert metadata_value(found["curated_dm"], "status") == "accepted"
    # Readable, but without its key the file is rejected at the door and listed as such.
    assert metadata_value(found["raw_ae"], "status") == "rejected"
    rejected = {r["file"]: r["reason"] for r in rejected_files(LakeLayout(str(runs.lake)), SECOND)}
    assert rejected == {"ae.xpt": "lacks required column(s) USUBJID"}


def test_volume_change_against_the_previous_delivery_warns(runs: QualityRuns) -> None:
    volume = checks(runs.second)[("curated_dm", "volume")]
    assert not volume.passed and volume.severity == dg.AssetCheckSeverity.WARN
    assert volume.metadata["previous_delivery"].value == "2024-01-15"
    assert volume.metadata["previous_rows"].value == 306
    assert volume.metadata["change_fraction"].value == pytest.approx((100 - 306) / 306, abs=1e-6)
    assert metadata_value(materializations(runs.second)["curated_dm"], "dagster/row_count") == 100


def test_checks_run_alone_and_catch_a_tampered_partition(runs: QualityRuns, spark: Any) -> None:
    # What the UI's "Execute checks" does: the asset job subset to checks only.
    defs = dg.Definitions(assets=CLINICAL_ASSETS, resources=resources_for("local", str(runs.lake)))
    vs_checks = {
        dg.AssetCheckKey(dg.AssetKey("curated_vs"), rule.name) for rule in sdtm_contract("vs").rules
    }
    checks_job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection=vs_checks
    )

    clean = checks_job.execute_in_process(partition_key=FIRST.key, instance=runs.instance)
    assert clean.get_asset_materialization_events() == []
    reconciliation = checks(clean)[("curated_vs", "reconciliation")]
    assert reconciliation.passed
    assert reconciliation.metadata["curated_rows"].value == 29_637

    victim = sorted(current_data_files(runs.lake, "curated", "vs", FIRST))[0]
    victim.unlink()
    tampered = checks_job.execute_in_process(
        partition_key=FIRST.key, instance=runs.instance, raise_on_error=False
    )
    broken = checks(tampered)[("curated_vs", "reconciliation")]
    assert not broken.passed and broken.severity == dg.AssetCheckSeverity.ERROR
    assert metadata_value(broken, "curated_rows") < 29_637


def test_quarantine_tables_have_the_declared_schema(runs: QualityRuns, spark: Any) -> None:
    """Quarantine keeps raw values as delivered (a CSV's text in its own columns) and declares
    every other column exactly."""
    compared = []
    for domain in ("ae", "vs", "lb"):
        if not table_exists(runs.lake, "quarantine", domain):
            continue
        table = read_table(spark, runs.lake, "quarantine", domain, FIRST)
        written = [(f.name, f.dataType.simpleString()) for f in table.schema]
        assert schema_differences(output(Zone.QUARANTINE, domain), written) == [], domain
        compared.append(domain)
    assert "ae" in compared
