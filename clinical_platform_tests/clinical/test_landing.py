"""Landing on the graph (observable source with per-delivery versions) and late deliveries."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import dagster as dg

from clinical_platform.clinical.landing import (
    LANDING_KEY,
    LandingPolicy,
    deliveries_on_time,
    landing_clinical,
    late_deliveries_job,
    late_studies,
)
from clinical_platform.lake import ClinicalLake, land_delivery
from clinical_platform.runs import register_delivery
from spark_jobs.contracts.layout import Delivery, LakeLayout, local_path


def test_late_studies_by_cadence() -> None:
    deliveries = [
        Delivery("S01", "2024-01-01"),
        Delivery("S01", "2024-03-01_2"),
        Delivery("S02", "2024-02-01"),
        Delivery("S04", "2020-01-01"),
    ]
    expected = {"S01": 30, "S02": 70, "S03": 7}
    assert late_studies(deliveries, expected, dt.date(2024, 3, 31)) == {
        "S03": "no delivery yet (expected every 7 days)",
    }
    assert late_studies(deliveries, expected, dt.date(2024, 4, 10)) == {
        "S01": "newest delivery 2024-03-01 is 40 days old; expected every 30 days "
        "(10 days overdue)",
        "S03": "no delivery yet (expected every 7 days)",
    }


def test_late_delivery_is_a_warning_in_the_ui() -> None:
    """The schedule's job evaluates the check: it fails as a WARN, naming the late study."""
    instance = dg.DagsterInstance.ephemeral()
    register_delivery(instance, Delivery("S01", "2024-01-01"))
    today = dt.date.today()
    register_delivery(instance, Delivery("S02", today.isoformat()))
    defs = dg.Definitions(
        asset_checks=[deliveries_on_time],
        assets=[landing_clinical],
        jobs=[late_deliveries_job],
        resources={
            "landing_policy": LandingPolicy(expected_every_days={"S01": 30, "S02": 30}),
            "lake": ClinicalLake(uri="unused"),
        },
    )
    result = defs.resolve_job_def("late_deliveries").execute_in_process(instance=instance)
    assert result.success  # a warning, not a failed run
    [evaluation] = result.get_asset_check_evaluations()
    assert (evaluation.passed, evaluation.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert evaluation.metadata["late_studies"].value == ["S01"]
    overdue = (today - dt.date(2024, 1, 1)).days - 30
    assert str(evaluation.metadata["late/S01"].value).endswith(f"({overdue} days overdue)")


def test_landing_partitions_are_versioned_by_their_manifest(tmp_path: Path) -> None:
    layout = LakeLayout(str(tmp_path / "lake"))
    instance = dg.DagsterInstance.ephemeral()
    source = tmp_path / "incoming"
    source.mkdir()
    (source / "dm.csv").write_bytes(b"STUDYID\nS01\n")
    versions = {}
    for day in ("2024-01-01", "2024-02-01"):
        delivery = Delivery("S01", day)
        land_delivery(source, delivery, layout, allow_duplicate=True)
        register_delivery(instance, delivery)
        manifest = Path(local_path(layout.manifest(delivery))).read_bytes()
        versions[delivery.key] = hashlib.sha256(manifest).hexdigest()
    defs = dg.Definitions(
        assets=[landing_clinical],
        jobs=[dg.define_asset_job("observe_landing", selection=[LANDING_KEY])],
        resources={"lake": ClinicalLake(uri=layout.root)},
    )
    result = defs.resolve_job_def("observe_landing").execute_in_process(instance=instance)
    assert result.success
    observations = [
        e.asset_observation_data.asset_observation
        for e in result.get_asset_observation_events()
        if e.asset_key == LANDING_KEY
    ]
    observed = {o.partition: o.tags["dagster/data_version"] for o in observations}
    assert observed == versions
    assert len(set(observed.values())) == 2
