"""Level 2: the CDISC pilot delivery through every asset, with exact counts (issue 3)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import functions as F

from clinical_platform import cli
from clinical_platform.definitions import build_definitions
from clinical_platform.launchers.local import LocalSparkLauncher
from clinical_platform.lineage.columns import landed_variables, trace_column
from clinical_platform_tests.conftest import PILOT_HASHES_DIR, PilotRun, pilot_hashes_file
from clinical_platform_tests.helpers import (
    checks,
    lake_catalog,
    lineage,
    materializations,
    materialize,
    metadata_value,
    read_table,
    table_exists,
)
from spark_jobs import features
from spark_jobs.contracts.layout import Delivery, LakeLayout
from spark_jobs.contracts.outputs import CLINICAL_OUTPUTS, schema_differences
from spark_jobs.runtime.arguments import DeliveryArgs
from spark_jobs.runtime.reporting import JobReporter
from spark_jobs.storage.tables import LakeTables

pytestmark = pytest.mark.slow

EXPECTED_ROWS = {
    "dm": 306,
    "ae": 961,
    "vs": 29_643,
    "lb": 54_667,
    "ex": 591,
    "ds": 596,
    "sv": 3_559,
}


def readme_checksums(pilot_dir: Path) -> dict[str, str]:
    """file -> sha256 from the table in the pilot's README."""
    table = re.findall(
        r"^\| (\S+\.(?:xpt|xml)) \|.*\| ([0-9a-f]{64}) \|$",
        (pilot_dir / "README.md").read_text(),
        flags=re.MULTILINE,
    )
    return dict(table)


def test_every_asset_materializes_with_the_pilot_row_counts(pilot_run: PilotRun) -> None:
    assert pilot_run.result.success
    found = materializations(pilot_run.result)
    for domain, rows in EXPECTED_ROWS.items():
        raw, curated = found[f"raw_{domain}"], found[f"curated_{domain}"]
        assert metadata_value(raw, "dagster/row_count") == rows, domain
        collapsed = metadata_value(curated, "duplicates_collapsed")
        quarantined = metadata_value(curated, "rows_quarantined")
        assert metadata_value(curated, "rows_in") == rows
        assert metadata_value(curated, "dagster/row_count") == rows - collapsed - quarantined
        # The clean pilot delivery has neither duplicates nor rule-breaking rows.
        assert (collapsed, quarantined) == (0, 0), domain
    assert metadata_value(found["features_subject_profile"], "dagster/row_count") == 306


def test_source_files_carry_the_published_sha256(pilot_run: PilotRun, pilot_dir: Path) -> None:
    published = readme_checksums(pilot_dir)
    assert len(published) == 9
    found = materializations(pilot_run.result)
    seen: dict[str, str] = {}
    for domain in EXPECTED_ROWS:
        for source in metadata_value(found[f"raw_{domain}"], "source_files"):
            seen[source["name"]] = source["sha256"]
            assert source["size"] == (pilot_dir / source["name"]).stat().st_size
            assert source["uri"].endswith(
                f"/landing/clinical/CDISCPILOT01/2024-01-15/{source['name']}"
            )
    assert {name: published[name] for name in seen} == seen
    assert sorted(seen) == sorted(n for n in published if n.endswith(".xpt"))


def test_lb_folds_chemistry_and_hematology(pilot_run: PilotRun) -> None:
    sources = metadata_value(materializations(pilot_run.result)["raw_lb"], "source_files")
    assert {s["name"]: s["rows"] for s in sources} == {"lbch.xpt": 32_740, "lbhe.xpt": 21_927}


def test_materializations_record_code_schema_and_spark_application(pilot_run: PilotRun) -> None:
    found = materializations(pilot_run.result)
    for name, materialization in found.items():
        meta = materialization.metadata
        assert re.fullmatch(r"[0-9a-f]{64}", metadata_value(materialization, "code_version"))
        assert str(metadata_value(materialization, "spark_application_id")).startswith("local-")
        assert metadata_value(materialization, "path").endswith(
            "study=CDISCPILOT01/delivery=2024-01-15"
        ), name
        assert "dagster/column_schema" in meta, name
        assert metadata_value(materialization, "content_hash"), name
        zone, dataset = name.split("_", 1)
        assert metadata_value(materialization, "dagster/table_name") == f"{zone}.clinical_{dataset}"
        assert metadata_value(materialization, "dagster/uri").endswith(
            f"/{zone}/clinical/{dataset}"
        )
        record = lineage(pilot_run.lake, zone, dataset, pilot_run.delivery)
        assert metadata_value(materialization, "snapshot_id") == str(record["snapshot_id"])
        # The data version Dagster compares for staleness is the committed content's hash.
        tags = materialization.tags or {}
        assert tags.get("dagster/data_version") == record["content_hash"], name
        # Curated and feature columns trace to their inputs' columns (from the contracts).
        assert ("dagster/column_lineage" in meta) == (zone != "raw"), name
    schema = metadata_value(found["curated_ae"], "dagster/column_schema")
    types = {c.name: c.type for c in schema.columns}
    assert types["AESEQ"] == "bigint"
    assert types["AESTDTC_DATE"] == "date"


def test_one_spark_application_for_every_stage(pilot_run: PilotRun) -> None:
    """Raw, curated and features of one delivery all come from the run's one application."""
    found = materializations(pilot_run.result)
    apps = {
        zone: {
            metadata_value(m, "spark_application_id")
            for n, m in found.items()
            if n.startswith(zone)
        }
        for zone in ("raw_", "curated_", "features_")
    }
    assert all(len(ids) == 1 for ids in apps.values()), apps
    assert len(set().union(*apps.values())) == 1


def test_every_check_passes_on_the_clean_pilot(pilot_run: PilotRun) -> None:
    evaluations = checks(pilot_run.result)
    # 3 per raw domain (7) + every curated rule + 2 feature checks
    assert len(evaluations) == 126
    assert [key for key, e in evaluations.items() if not e.passed] == []
    # Informational: lab results outside their own reference range are flagged, not rejected.
    reference = evaluations[("curated_lb", "reference_range")]
    assert reference.metadata["failing_rows"].value == 2_439


def test_features_are_de_identified(pilot_run: PilotRun, spark) -> None:
    features = read_table(spark, pilot_run.lake, "features", "subject_profile", pilot_run.delivery)
    assert features.count() == 306
    names = [c.upper() for c in features.columns]
    assert "USUBJID" not in names and "SUBJID" not in names
    date_types = [
        f.name
        for f in features.schema.fields
        if f.dataType.typeName() in ("date", "timestamp", "timestamp_ntz")
    ]
    assert date_types == []
    assert not [n for n in names if n.endswith(("DTC", "_DATE"))]
    assert features.select("subject_pseudonym").distinct().count() == 306
    disposition = {
        r["disposition"]: r["count"] for r in features.groupBy("disposition").count().collect()
    }
    assert disposition == {"completed": 110, "discontinued": 144, "screen_failure": 52}


def test_lineage_is_written_beside_the_data(pilot_run: PilotRun) -> None:
    record = lineage(pilot_run.lake, "curated", "vs", pilot_run.delivery)
    assert record["status"] == "accepted"
    assert record["rows"] == {"in": 29_643, "out": 29_643, "quarantined": 0, "collapsed": 0}
    assert [i["asset"] for i in record["inputs"]] == ["raw_vs", "raw_dm"]
    raw = lineage(pilot_run.lake, "raw", "vs", pilot_run.delivery)
    assert record["inputs"][0]["content_hash"] == raw["content_hash"]
    assert raw["sources"][0]["sha256"] == (
        "ce2c17eeb807e2a33d4d4ee9b82d0cd978a9f02cafb290b68b985f2a2c591ea3"
    )


@pytest.mark.usefixtures("pseudonym_key")
def test_rematerializing_replaces_the_partition_with_identical_content(
    pilot_run: PilotRun, spark
) -> None:
    first = {d: lineage(pilot_run.lake, "curated", d, pilot_run.delivery) for d in EXPECTED_ROWS}
    again = materialize(
        pilot_run.lake,
        pilot_run.delivery,
        selection=[f"raw_{d}" for d in EXPECTED_ROWS] + [f"curated_{d}" for d in EXPECTED_ROWS],
    )
    assert again.success
    found = materializations(again)
    for domain, before in first.items():
        after = lineage(pilot_run.lake, "curated", domain, pilot_run.delivery)
        assert after["run_id"] != before["run_id"]
        assert after["content_hash"] == before["content_hash"], domain
        assert after["rows"] == before["rows"]
        assert metadata_value(found[f"curated_{domain}"], "content_hash") == before["content_hash"]
        # Replaced, not appended: the table holds exactly one copy of the rows, in a new
        # snapshot, and no staging branch is left behind.
        rows = read_table(spark, pilot_run.lake, "curated", domain, pilot_run.delivery)
        assert rows.count() == EXPECTED_ROWS[domain]
        assert after["snapshot_id"] != before["snapshot_id"]
        # The previous version stays readable by its snapshot id, for audit.
        old = read_table(
            spark, pilot_run.lake, "curated", domain, pilot_run.delivery, before["snapshot_id"]
        )
        assert {r[0] for r in old.select("_curated_run_id").distinct().collect()} == {
            before["run_id"]
        }
        assert old.count() == EXPECTED_ROWS[domain]


def test_every_written_schema_is_the_declared_one(pilot_run: PilotRun, spark) -> None:
    """For all 15 clinical assets: the table each job wrote has exactly the names and types the
    asset declares in Dagster (and the kernel, for any quarantine table); the pilot is a SAS XPORT
    delivery of every contract column, so raw must match exactly too."""
    declared = {
        spec.key.to_user_string(): [
            (c.name, c.type) for c in spec.metadata["dagster/column_schema"].columns
        ]
        for spec in build_definitions("local", str(pilot_run.lake)).resolve_all_asset_specs()
        # The delivered files have no table, no schema; the sensor family has its own test.
        if spec.group_name != "landing" and spec.tags["family"] == "clinical"
    }
    assert len(declared) == 15
    compared = 0
    for out in CLINICAL_OUTPUTS:
        if not out.is_asset and not table_exists(pilot_run.lake, out.zone, out.name):
            continue  # a clean delivery sets nothing aside: no quarantine table is created
        table = read_table(spark, pilot_run.lake, out.zone, out.name, pilot_run.delivery)
        written = [(f.name, f.dataType.simpleString()) for f in table.schema]
        if out.is_asset:
            assert written == declared[out.asset_key], out.asset_key
        assert schema_differences(out, written, exact=True) == [], out.asset_key
        compared += 1
    assert compared == 15


def sql(lake: Path, query: str, capsys: pytest.CaptureFixture[str], *options: str) -> str:
    """`clinical-platform sql` as a user runs it; its standard output."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli.main(["sql", query, "--lake", str(lake), *options])
    captured = capsys.readouterr()
    assert exited.value.code == 0, captured.err
    return captured.out


def test_the_tables_answer_to_their_names(
    pilot_run: PilotRun, capsys: pytest.CaptureFixture[str]
) -> None:
    """Users and tools find data by table name: counts by SQL, comments from the SDTM labels."""
    counts = sql(
        pilot_run.lake,
        "select (select count(*) from curated.clinical_vs where study = 'CDISCPILOT01') vs, "
        "(select count(*) from features.clinical_subject_profile "
        "where study = 'CDISCPILOT01' and delivery = '2024-01-15') profile",
        capsys,
        "--format",
        "csv",
    )
    assert counts == "vs,profile\n29643,306\n"
    described = sql(pilot_run.lake, "describe curated.clinical_dm", capsys, "--format", "json")
    columns = {row["col_name"]: row for row in map(json.loads, described.splitlines())}
    assert columns["AGE"]["comment"] == "Age"
    assert columns["AGE"]["data_type"] == "double"


def test_each_commit_names_its_run_delivery_and_code(pilot_run: PilotRun) -> None:
    """The snapshot a lineage record names carries the run, delivery and code version."""
    record = lineage(pilot_run.lake, "curated", "dm", pilot_run.delivery)
    table = lake_catalog(pilot_run.lake).load_table("curated.clinical_dm")
    snapshot = table.snapshot_by_id(record["snapshot_id"])
    assert snapshot is not None
    summary = snapshot.summary.additional_properties
    assert summary["clinical.run-id"] == record["run_id"]
    assert summary["clinical.delivery"] == pilot_run.delivery.key
    assert summary["clinical.code-version"] == record["code_version"]
    assert summary["clinical.contract-version"] == table.properties["clinical.contract-version"]


def test_a_feature_column_walks_back_to_the_variables_of_vs_xpt(
    pilot_run: PilotRun, pilot_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """sysbp_change comes from four VS variables: in Dagster's column lineage (definition and
    materialization metadata, both from the contract) and in the dossier's walk, which ends at
    the variables of vs.xpt with its published sha256."""
    profile = materializations(pilot_run.result)["features_subject_profile"]
    deps = metadata_value(profile, "dagster/column_lineage").deps_by_column["sysbp_change"]
    vs = ["VISITNUM", "VSBLFL", "VSSTRESN", "VSTESTCD"]
    assert sorted((d.asset_key.to_user_string(), d.column_name) for d in deps) == [
        ("curated_vs", v) for v in vs
    ]
    curated = metadata_value(
        materializations(pilot_run.result)["curated_vs"], "dagster/column_lineage"
    )
    assert [d.column_name for d in curated.deps_by_column["VSSTRESN"]] == ["VSSTRESN"]

    hop = trace_column(LakeLayout(str(pilot_run.lake)), pilot_run.delivery, "sysbp_change")
    assert (hop.asset, hop.committed) == ("features_subject_profile", True)
    assert sorted((h.asset, h.column, h.partition) for h in hop.upstream) == [
        ("curated_vs", v, pilot_run.delivery.key) for v in vs
    ]
    assert sorted((h.asset, h.column) for u in hop.upstream for h in u.upstream) == [
        ("raw_vs", v) for v in vs
    ]
    published = readme_checksums(pilot_dir)["vs.xpt"]
    assert [(v, f["name"], f["sha256"]) for v, f in landed_variables(hop)] == [
        (v, "vs.xpt", published) for v in vs
    ]

    capsys.readouterr()
    key = pilot_run.delivery
    arguments = ["--study", key.study, "--delivery", key.delivery, "--lake", str(pilot_run.lake)]
    with pytest.raises(SystemExit) as exited:
        cli.main(["dossier", *arguments, "--column", "sysbp_change"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert "## Column lineage of features_subject_profile.sysbp_change" in out
    assert "From 4 variable(s) as landed: vs.xpt:VISITNUM, vs.xpt:VSBLFL" in out
    with pytest.raises(SystemExit) as exited:
        cli.main(
            ["dossier", *arguments, "--column", "sysbp", "--asset", "features_subject_profile"]
        )
    assert exited.value.code == 1
    assert "features_subject_profile has no column 'sysbp'" in capsys.readouterr().err

    # The same walk in the JSON dossier (and the HTML page made from it).
    for form in ("json", "html"):
        with pytest.raises(SystemExit) as exited:
            cli.main(["dossier", *arguments, "--column", "sysbp_change", "--format", form])
        assert exited.value.code == 0
        out = capsys.readouterr().out
        if form == "html":
            assert "Column lineage of <code>features_subject_profile.sysbp_change</code>" in out
            assert "variable <code>VSSTRESN</code> of <code>vs.xpt</code>" in out
            continue
        walk = json.loads(out)["column_lineage"]
        assert (walk["asset"], walk["column"]) == ("features_subject_profile", "sysbp_change")
        assert walk["landed_variables"] == [
            {"file": "vs.xpt", "variable": v, "sha256": published} for v in vs
        ]


class RecordingReporter(JobReporter):
    """The job's reporter without Dagster, keeping every check it reports."""

    def __init__(self) -> None:
        super().__init__(None)
        self.reported: dict[str, tuple[bool, dict[str, Any]]] = {}

    def check(self, asset_key: str, check_name: str, passed: bool, **kwargs: Any) -> None:
        self.reported[check_name] = (passed, dict(kwargs["metadata"]))


def test_identifying_values_in_features_are_refused_and_not_committed(
    pilot_run: PilotRun, spark, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The features job on the pilot's current data, its profile made to carry e-mail
    addresses and one USUBJID: the blocking PHI check fails, and nothing is committed."""
    session = spark.newSession()  # its own catalog: the pilot run's lake
    for key, value in LocalSparkLauncher(lake_uri=str(pilot_run.lake)).catalog_conf().items():
        if key.startswith("spark.sql.catalog."):  # the extensions are the shared session's
            session.conf.set(key, value)
    built_profile = features.subject_profile

    def leaky(*args: Any) -> Any:
        clean = built_profile(*args)
        e_mail = F.concat(F.substring("subject_pseudonym", 1, 8), F.lit("@example.org"))
        return clean.withColumn("disposition_reason", e_mail).withColumn(
            "race", F.when(F.col("sex") == "F", F.lit("01-701-1015")).otherwise(F.col("race"))
        )

    monkeypatch.setattr(features, "subject_profile", leaky)
    later = Delivery(pilot_run.delivery.study, "2024-01-16")  # reads the pilot's current data
    job = DeliveryArgs(LakeLayout(str(pilot_run.lake)), later, "phi-test", checks_only=False)
    reporter = RecordingReporter()
    features.featurize_delivery(
        session, LakeTables(session, job.layout, job.run_id), job, "phi-key", reporter
    )
    passed, metadata = reporter.reported["no_identifiers"]
    assert not passed
    assert metadata["identifying_values"]["raw_value"] == {  # as Pipes carries it
        "disposition_reason": "e-mail address",
        "race": "subject identifier (USUBJID or SUBJID)",
    }
    table = f"clinical.{features.PROFILE.table}"
    assert session.table(table).where(f"delivery = '{later.delivery}'").count() == 0
    assert session.sql(f"SELECT name FROM {table}.refs WHERE type = 'BRANCH'").collect() == [
        ("main",)
    ]
    with pytest.raises(AssertionError, match="no lineage record"):
        lineage(pilot_run.lake, "features", "subject_profile", later)


def test_the_pilot_has_the_same_rows_and_hashes_on_every_spark(pilot_run: PilotRun) -> None:
    """Every asset's rows, content and data hash equal those of the same code's pilot run on
    each other PySpark version that left its hashes (`make test` on the default Spark, then
    `make test-emr-spark` on EMR 6.15's compares with it)."""
    import pyspark

    ours_path = pilot_hashes_file(pyspark.__version__)
    ours = json.loads(ours_path.read_text(encoding="utf-8"))
    others, stale = [], []
    for path in sorted(PILOT_HASHES_DIR.glob("pilot-hashes-*.json")):
        if path == ours_path:
            continue
        other = json.loads(path.read_text(encoding="utf-8"))
        (others if other.get("code_version") == ours["code_version"] else stale).append(other)
    if not others:
        message = (
            f"no pilot hashes of this code from a PySpark other than {pyspark.__version__} in "
            f"{PILOT_HASHES_DIR}"
            + (f" (only of other code, from {[s['pyspark'] for s in stale]})" if stale else "")
            + ": run the pilot end to end on another PySpark first (make test, then "
            "make test-emr-spark)"
        )
        if os.environ.get("CLINICAL_REQUIRE_SPARK_COMPARISON") == "1":
            pytest.fail(message)
        pytest.skip(message)
    for other in others:
        differing = {
            asset: {pyspark.__version__: ours["assets"].get(asset), other["pyspark"]: theirs}
            for asset, theirs in other["assets"].items()
            if ours["assets"].get(asset) != theirs
        }
        missing = sorted(set(ours["assets"]) - set(other["assets"]))
        assert (differing, missing) == ({}, []), f"PySpark {other['pyspark']} differs"


def test_openlineage_gets_a_complete_event_per_asset_with_column_lineage(
    pilot_run: PilotRun,
) -> None:
    """The pilot run had a file transport configured: each of its 15 assets is one
    OpenLineage run (START, COMPLETE) on the delivery, and the features' output names the
    VS variables sysbp_change comes from."""
    events = [json.loads(line) for line in pilot_run.openlineage.read_text().splitlines()]
    runs: dict[str, list[str]] = {}
    for event in events:
        runs.setdefault(event["job"]["name"], []).append(event["eventType"])
    assert runs == {
        f"{name}/{pilot_run.delivery.key}": ["START", "COMPLETE"]
        for name in materializations(pilot_run.result)
    }
    assert len(runs) == 15
    [profile] = [
        e
        for e in events
        if e["job"]["name"].startswith("features") and e["eventType"] == "COMPLETE"
    ]
    [output] = profile["outputs"]
    assert output["name"] == "features.clinical_subject_profile"
    sources = output["facets"]["columnLineage"]["fields"]["sysbp_change"]["inputFields"]
    assert sorted((f["name"], f["field"]) for f in sources) == [
        ("curated.clinical_vs", v) for v in ["VISITNUM", "VSBLFL", "VSSTRESN", "VSTESTCD"]
    ]
    completed = [e for e in events if e["eventType"] == "COMPLETE"]
    curated = [e for e in completed if e["job"]["name"].startswith("curated_")]
    assert len(curated) == 7 and all("columnLineage" in e["outputs"][0]["facets"] for e in curated)
