"""Runs of one partition as the UI starts them, without Spark (the scripted jobs of
`test_backfill_plumbing`): checks recorded per delivery, a bad key or an unlanded delivery
refused at once in one line, and the delivery's dossier refreshed and named by each run."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from clinical_platform.clinical.assets import CHECKS_WITHOUT_DELIVERY
from clinical_platform.clinical.checks import checks_job
from clinical_platform.runs import materialize_delivery, register_delivery, select_assets
from clinical_platform_tests.clinical.test_backfill_plumbing import (
    BAD,
    GOOD,
    LAUNCHES,
    lake,  # noqa: F401 - fixture
    scripted,  # noqa: F401 - fixture
)
from clinical_platform_tests.helpers import metadata_of, partition_materialization
from spark_jobs.contracts.layout import Delivery, LakeLayout, local_path

CHECK = dg.AssetCheckKey(dg.AssetKey("curated_dm"), "files_readable")


def test_a_failing_delivery_stays_failed_after_a_passing_one(
    lake: LakeLayout,  # noqa: F811
    scripted: dg.Definitions,  # noqa: F811
) -> None:
    """Check results are declared per delivery: the bad delivery's curated DM check stays
    failed in its partition after the next delivery passes."""
    instance = dg.DagsterInstance.ephemeral()
    selection = select_assets(scripted, ["*_dm"])
    assert not materialize_delivery(scripted, BAD, instance, selection).success
    assert materialize_delivery(scripted, GOOD[0], instance, selection).success
    history = instance.event_log_storage.get_asset_check_execution_history(CHECK, limit=10)
    assert {r.partition: r.status.value for r in history} == {
        BAD.key: "FAILED",
        GOOD[0].key: "SUCCEEDED",
    }


def test_each_run_refreshes_and_names_the_delivery_dossier(
    lake: LakeLayout,  # noqa: F811
    scripted: dg.Definitions,  # noqa: F811
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    outcome = materialize_delivery(scripted, GOOD[0], instance, select_assets(scripted, ["raw_*"]))
    assert outcome.success
    dossier = Path(local_path(lake.dossier(GOOD[0])))
    assert dossier.read_text().startswith(f"# Audit dossier — {GOOD[0].key}")
    raw_dm = partition_materialization(instance, "raw_dm", GOOD[0])
    assert metadata_of(raw_dm, "dossier") == lake.dossier(GOOD[0])
    assert metadata_of(raw_dm, "dossier_command") == (
        f"clinical-platform dossier --study {GOOD[0].study} --delivery {GOOD[0].delivery} "
        "--asset raw_dm --format html --out dossier.html"
    )


def test_a_bad_or_unlanded_partition_fails_at_once_in_one_line(
    lake: LakeLayout,  # noqa: F811
    scripted: dg.Definitions,  # noqa: F811
) -> None:
    """What "Add a partition" in the materialize dialog can produce: a malformed key, or a
    well-formed one nobody landed. The step fails before any Spark job, in one line."""
    instance = dg.DagsterInstance.ephemeral()
    job = scripted.resolve_implicit_global_asset_job_def()
    unlanded = Delivery("S01", "2030-01-01")
    expected = {
        "not-a-delivery": "not a delivery: partition key 'not-a-delivery' is not of the form "
        "STUDY/DELIVERY",
        unlanded.key: f"{unlanded.key}: never landed in {lake.root} (no delivery manifest); "
        "land it with `clinical-platform land` or drop it into landing for the landing sensor",
    }
    for key, message in expected.items():
        instance.add_dynamic_partitions("clinical_deliveries", [key])
        result = job.execute_in_process(
            partition_key=key,
            instance=instance,
            asset_selection=[dg.AssetKey("raw_dm")],
            raise_on_error=False,
        )
        assert not result.success
        [failure] = [e for e in result.all_events if e.is_step_failure]
        error = failure.step_failure_data.error
        assert error is not None and error.message.strip().endswith(message)
        assert "\n" not in error.message.strip()
    assert register_delivery(instance, unlanded) is False


def test_checks_of_a_delivery_rerun_on_committed_data(
    lake: LakeLayout,  # noqa: F811
    scripted: dg.Definitions,  # noqa: F811
) -> None:
    """The `clinical_checks` job (and `materialize --checks-only`) re-evaluates a chosen
    delivery's checks: every stage's job runs with --checks-only, results per partition."""
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_delivery(scripted, GOOD[0], instance, select_assets(scripted, ["*_dm"]))
    LAUNCHES.clear()
    outcome = materialize_delivery(scripted, GOOD[0], instance, checks_only=True)
    assert outcome.success and outcome.rows == {}
    assert sorted(entry for entry, _ in LAUNCHES) == ["curate", "features", "ingest"]
    assert all("--checks-only" in arguments for _, arguments in LAUNCHES)
    assert outcome.checks["curated_dm:files_readable"] is True
    history = instance.event_log_storage.get_asset_check_execution_history(CHECK, limit=10)
    assert [(r.partition, r.status.value) for r in history] == [
        (GOOD[0].key, "SUCCEEDED"),
        (GOOD[0].key, "SUCCEEDED"),
    ]


def test_execute_checks_without_a_delivery_says_so_and_marks_nothing_failed(
    lake: LakeLayout,  # noqa: F811
    scripted: dg.Definitions,  # noqa: F811
) -> None:
    """What *Execute checks* on an asset's Checks tab launches in Dagster 1.13: a run with no
    partition. It evaluates nothing, records no failure, and its log says what to do."""
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_delivery(scripted, BAD, instance, select_assets(scripted, ["*_dm"]))
    before = instance.event_log_storage.get_asset_check_execution_history(CHECK, limit=10)
    LAUNCHES.clear()
    job = dg.Definitions.merge(scripted, dg.Definitions(jobs=[checks_job()])).resolve_job_def(
        "clinical_checks"
    )
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success and LAUNCHES == []
    assert result.get_asset_check_evaluations() == []
    warnings = [
        e.message for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert warnings == []
    logs = instance.all_logs(result.run_id)
    assert any(CHECKS_WITHOUT_DELIVERY in (entry.user_message or "") for entry in logs)
    after = instance.event_log_storage.get_asset_check_execution_history(CHECK, limit=10)
    print([(r.partition, r.status.value) for r in after])
    assert [r for r in after if r.status.value == "FAILED"] == [
        r for r in before if r.status.value == "FAILED"
    ]
