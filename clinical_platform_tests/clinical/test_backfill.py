"""Level 2: a backfill of four pilot deliveries, one Spark application for every stage.

One `clinical-platform backfill` run over three copies of the CDISC pilot (one without the
hematology file, so its LB differs) and one whose dm.xpt is truncated. Each delivery must come
out as a run of its own would have: the same rows and content hashes as the single-delivery
`pilot_run`, its own commit and lineage record, its own materializations and checks in Dagster,
and the broken one failing alone. The broken copy carries the pilot's small domains only (no
VS, no LB): its other domains must commit while its DM is refused, and the big files would
only add minutes to the suite.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from clinical_platform.lake import land_delivery, rejected_files
from clinical_platform.runs import local_instance
from clinical_platform_tests.conftest import TEST_PSEUDONYM_KEY, PilotRun
from clinical_platform_tests.helpers import (
    lake_catalog,
    lineage,
    metadata_of,
    partition_materialization,
    run_command,
)
from spark_jobs.contracts.layout import Delivery, LakeLayout
from spark_jobs.contracts.outputs import CURATED_OUTPUTS, FEATURE_OUTPUTS, RAW_OUTPUTS

pytestmark = pytest.mark.slow

STUDY = "CDISCPILOT01"
SAME = Delivery(STUDY, "2024-01-15")  # the pilot_run's key: content hashes compare too
BROKEN = Delivery(STUDY, "2024-02-15")  # dm.xpt truncated; no VS or LB files
COPY = Delivery(STUDY, "2024-03-15")
NO_LBHE = Delivery(STUDY, "2024-04-15")  # without lbhe.xpt: LB holds chemistry only
DELIVERIES = (SAME, BROKEN, COPY, NO_LBHE)
NOT_IN_BROKEN = ("vs.xpt", "lbch.xpt", "lbhe.xpt")
LBCH_ROWS = 32_740  # of the pilot's 54,667 LB rows: lbch.xpt (lbhe.xpt holds the rest)


@dataclass
class Backfill:
    lake: Path
    code: int
    out: str
    err: str
    instance: dg.DagsterInstance


@pytest.fixture(scope="module")
def backfill(pilot_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfill]:
    root = tmp_path_factory.mktemp("backfill")
    lake = root / "lake"
    layout = LakeLayout(str(lake))
    for delivery in DELIVERIES:
        folder = root / "deliveries" / delivery.delivery
        shutil.copytree(pilot_dir, folder)
        if delivery == BROKEN:
            dm = (folder / "dm.xpt").read_bytes()
            (folder / "dm.xpt").write_bytes(dm[: len(dm) // 2 + 7])  # cut mid-observation
            for name in NOT_IN_BROKEN:
                (folder / name).unlink()
        if delivery == NO_LBHE:
            (folder / "lbhe.xpt").unlink()
        land_delivery(folder, delivery, layout, allow_duplicate=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        patch.setenv("CLINICAL_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
        patch.delenv("CLINICAL_ENV", raising=False)
        code, out, err = run_command(["backfill", "--study", STUDY, "--lake", str(lake)])
        with local_instance() as instance:
            yield Backfill(lake, code, out, err, instance)


def record(lake: Path, key: str, delivery: Delivery) -> dict[str, Any]:
    zone, dataset = key.split("_", 1)
    return lineage(lake, zone, dataset, delivery)


def test_one_line_per_delivery_and_a_failed_exit(backfill: Backfill) -> None:
    lines = backfill.out.splitlines()
    assert lines[0] == f"{SAME.key}  succeeded  15/15 assets"
    assert lines[1].startswith(f"{BROKEN.key}  failed     8/11 assets  dm.xpt: "), lines[1]
    assert lines[1].endswith(
        "(raw_dm rejected, curated_dm not committed, features_subject_profile not materialized)"
    )
    assert lines[2:4] == [f"{d.key}  succeeded  15/15 assets" for d in (COPY, NO_LBHE)]
    assert len(lines) == 5 and lines[4].endswith(": failed")  # one run
    assert backfill.code == 1
    assert backfill.err.splitlines()[-1] == (
        f"clinical-platform: backfill of {STUDY}: 1 of 4 deliveries failed"
    )


def test_good_deliveries_hold_exactly_what_a_run_of_their_own_holds(
    backfill: Backfill, pilot_run: PilotRun
) -> None:
    """Rows and data hashes of every table equal the single run's; for the same key, the
    content hashes too."""
    keys = [o.asset_key for o in (*RAW_OUTPUTS, *CURATED_OUTPUTS, *FEATURE_OUTPUTS)]
    for key in keys:
        single = record(pilot_run.lake, key, pilot_run.delivery)
        for delivery in (SAME, COPY, NO_LBHE):
            if delivery == NO_LBHE and key.endswith(("_lb", "subject_profile")):
                continue
            found = record(backfill.lake, key, delivery)
            assert found["rows"] == single["rows"], (key, delivery)
            assert found["data_hash"] == single["data_hash"], (key, delivery)
        assert record(backfill.lake, key, SAME)["content_hash"] == single["content_hash"], key
    assert record(backfill.lake, "raw_lb", NO_LBHE)["rows"]["out"] == LBCH_ROWS


def test_one_spark_application_for_every_stage_and_delivery(backfill: Backfill) -> None:
    def committed(delivery: Delivery, name: str, stage: str) -> bool:
        if delivery != BROKEN:
            return True
        return name not in ("vs", "lb") and not (stage == "curated" and name == "dm")

    applications = {}
    for stage, outputs in (("raw", RAW_OUTPUTS), ("curated", CURATED_OUTPUTS)):
        applications[stage] = {
            record(backfill.lake, o.asset_key, d)["spark_application_id"]
            for o in outputs
            for d in DELIVERIES
            if committed(d, o.name, stage)
        }
    applications["features"] = {
        record(backfill.lake, "features_subject_profile", d)["spark_application_id"]
        for d in (SAME, COPY, NO_LBHE)
    }
    assert all(len(ids) == 1 for ids in applications.values()), applications
    assert len(set().union(*applications.values())) == 1  # the run's one application
    # ... and still one atomic commit (its own snapshot) per delivery.
    snapshots = {record(backfill.lake, "curated_ae", d)["snapshot_id"] for d in DELIVERIES}
    assert len(snapshots) == 4


def test_the_broken_delivery_fails_alone(backfill: Backfill) -> None:
    dm = record(backfill.lake, "raw_dm", BROKEN)
    assert dm["status"] == "rejected" and "dm.xpt" in dm["reason"], dm
    assert [r["file"] for r in rejected_files(LakeLayout(str(backfill.lake)), BROKEN)] == ["dm.xpt"]
    assert record(backfill.lake, "curated_ae", BROKEN)["status"] == "accepted"
    with pytest.raises(AssertionError, match="no lineage record"):
        record(backfill.lake, "curated_dm", BROKEN)
    with pytest.raises(AssertionError, match="no lineage record"):
        record(backfill.lake, "features_subject_profile", BROKEN)
    features = dg.AssetKey("features_subject_profile")
    assert backfill.instance.get_materialized_partitions(features) == {
        d.key for d in (SAME, COPY, NO_LBHE)
    }


def test_each_partition_has_its_own_materialization_and_checks(backfill: Backfill) -> None:
    instance = backfill.instance
    lb = {d: partition_materialization(instance, "raw_lb", d) for d in (SAME, NO_LBHE)}
    assert metadata_of(lb[SAME], "dagster/row_count") == 54_667
    assert metadata_of(lb[NO_LBHE], "dagster/row_count") == LBCH_ROWS
    assert (
        metadata_of(lb[NO_LBHE], "content_hash")
        == record(backfill.lake, "raw_lb", NO_LBHE)["content_hash"]
    )
    refused = partition_materialization(instance, "curated_dm", BROKEN)
    assert metadata_of(refused, "status") == "not committed"
    assert "files_readable failed" in metadata_of(refused, "reason")
    # Dagster 1.13 materializes every partition of a step's range for each output it yields:
    # a domain the broken delivery does not carry is recorded as such.
    absent = partition_materialization(instance, "raw_vs", BROKEN)
    assert metadata_of(absent, "status") == "not committed"
    assert "does not carry it" in metadata_of(absent, "reason")
    check = dg.AssetCheckKey(dg.AssetKey("curated_dm"), "files_readable")
    history = instance.event_log_storage.get_asset_check_execution_history(check, limit=10)
    assert {r.partition: r.status.value for r in history if r.partition} == {
        SAME.key: "SUCCEEDED",
        BROKEN.key: "FAILED",
        COPY.key: "SUCCEEDED",
        NO_LBHE.key: "SUCCEEDED",
    }


def test_no_subject_id_reaches_dagsters_event_log(backfill: Backfill) -> None:
    """Materializations, check results (their examples too) and log lines of the whole run
    name rows and counts, never a subject: none of the pilot's 306 USUBJIDs is in them."""
    dm = lake_catalog(backfill.lake).load_table("raw.clinical_dm").scan().to_arrow()
    subjects = {s.strip() for s in dm.column("USUBJID").to_pylist() if s and s.strip()}
    assert len(subjects) == 306
    instance = backfill.instance
    entries = [e for run in instance.get_runs() for e in instance.all_logs(run.run_id)]
    text = "\n".join(serialize_value(entry) for entry in entries)
    assert len(entries) > 500
    assert re.search(r"lb(ch|he)\.xpt row \d+", text), "check examples name rows"
    assert sorted(s for s in subjects if s in text) == []
