"""Level 2: a Spark job killed after writing its data and before committing changes nothing.

The ingest job is stopped like a kill -9 (the `CLINICAL_FAULT_BEFORE_PUBLISH` test hook) once
its rows sit in a staging branch and before the publish that would make them current.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from clinical_platform import cli
from clinical_platform.generators.sdtm import generate_sdtm
from clinical_platform_tests.helpers import land, lineage, materialize, read_table
from spark_jobs.contracts.layout import Delivery
from spark_jobs.contracts.tables import FAULT_BEFORE_PUBLISH_ENV

pytestmark = pytest.mark.slow

DELIVERY = Delivery("SYNTH01", "2024-04-01")


def test_a_job_killed_before_its_commit_leaves_the_previous_version(
    tmp_path: Path, spark, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_sdtm(tmp_path / "delivery", 6, study=DELIVERY.study)
    lake = tmp_path / "lake"
    land(tmp_path / "delivery", DELIVERY, lake)
    instance = dg.DagsterInstance.ephemeral()
    first = materialize(lake, DELIVERY, selection=["raw_dm", "raw_sv"], instance=instance)
    assert first.success
    before = lineage(lake, "raw", "dm", DELIVERY)

    monkeypatch.setenv(FAULT_BEFORE_PUBLISH_ENV, "raw.clinical_dm")
    killed = materialize(lake, DELIVERY, selection=["raw_dm", "raw_sv"], instance=instance)
    assert not killed.success
    # The previous version is still the table's, complete, and its record still describes it.
    assert lineage(lake, "raw", "dm", DELIVERY) == before
    rows = read_table(spark, lake, "raw", "dm", DELIVERY)
    assert rows.count() == 6
    assert {r[0] for r in rows.select("_ingested_run_id").distinct().collect()} == {
        before["run_id"]
    }

    monkeypatch.delenv(FAULT_BEFORE_PUBLISH_ENV)
    again = materialize(lake, DELIVERY, selection=["raw_dm", "raw_sv"], instance=instance)
    assert again.success
    after = lineage(lake, "raw", "dm", DELIVERY)
    assert after["snapshot_id"] != before["snapshot_id"]
    assert after["content_hash"] == before["content_hash"]
    assert read_table(spark, lake, "raw", "dm", DELIVERY).count() == 6

    # Retention drops the killed run's staging branch and keeps the newest versions.
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli.main(["retention", "--keep", "1", "--stage-hours", "0", "--lake", str(lake)])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert "raw.clinical_dm: " in out and ", 1 stale staging branches dropped" in out
    assert read_table(spark, lake, "raw", "dm", DELIVERY).count() == 6
