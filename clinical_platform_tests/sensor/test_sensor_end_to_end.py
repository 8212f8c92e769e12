"""Level 3: a generated sensor delivery landed and materialized through Dagster, raw ->
curated minutes -> features per subject-day, in one Spark application.

The generator knows every right answer: each subject-day's features must be its truth
(resting heart rate to 1e-12, the rest exactly), quarantine must hold exactly the impossible
readings it injected, by reason, and raw must balance with curated, quarantine and the
collapsed duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from pyspark.sql import functions as F

from clinical_platform.generators.sensor import SensorDelivery, generate_sensor
from clinical_platform.lake import read_lineage
from clinical_platform.sensor.assets import SENSOR_ASSETS
from clinical_platform_tests.helpers import (
    assert_checks_alone_agree,
    checks,
    land_and_materialize,
    materializations,
    metadata_value,
    read_table,
    run_family_checks,
)
from spark_jobs.contracts.layout import Delivery, LakeLayout, local_path
from spark_jobs.contracts.outputs import REJECT_REASONS, SENSOR_OUTPUTS, schema_differences
from spark_jobs.contracts.sensor import SENSOR_FAMILY

pytestmark = pytest.mark.slow

STUDY = "SENSOR01"
DELIVERY = Delivery(STUDY, "2024-01-03")


@pytest.fixture(scope="module")
def sensor_run(
    tmp_path_factory: pytest.TempPathFactory, spark: Any
) -> tuple[Path, SensorDelivery, dg.ExecuteInProcessResult, str]:
    key = "sensor-e2e-key-0123456789abcdef"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLINICAL_PSEUDONYM_KEY", key)
        root = tmp_path_factory.mktemp("sensor_lake")
        generated = generate_sensor(root / "upload", 3, 2, study=STUDY)
        lake = root / "lake"
        # As in production: the family's landing sensor sees the upload and asks for the run.
        result = land_and_materialize(
            root / "upload", DELIVERY, lake, SENSOR_FAMILY, SENSOR_ASSETS, via_sensor=True
        )
    return lake, generated, result, key


def test_every_stage_commits_and_its_checks_pass(sensor_run: Any) -> None:
    _, generated, result, _ = sensor_run
    assert result.success
    found = materializations(result)
    assert sorted(found) == ["curated_sensor", "features_sensor_daily", "raw_sensor"]
    assert metadata_value(found["raw_sensor"], "rows_out") == generated.rows
    results = {k: c.passed for k, c in checks(result).items()}
    for check in ("reconciliation", "natural_key", "castable", "study_matches"):
        assert results[("curated_sensor", check)], check
    # Impossible readings were quarantined: the rule's check says so (a warning).
    assert not results[("curated_sensor", "plausible_range")]
    assert results[("features_sensor_daily", "no_identifiers")]
    assert results[("features_sensor_daily", "one_row_per_subject_day")]
    dossier = Path(local_path(metadata_value(found["features_sensor_daily"], "dossier")))
    assert dossier.name == f"sensor_{STUDY}_{DELIVERY.delivery}.md"
    text = dossier.read_text()
    assert "| features_sensor_daily | accepted | " in text
    assert "all unchanged, chain intact" in text


def test_every_written_schema_is_the_declared_one(sensor_run: Any, spark: Any) -> None:
    """raw, curated, quarantine and features: the tables hold exactly the declared columns
    (raw and quarantine: the delivered columns typed as the Parquet files typed them)."""
    lake, *_ = sensor_run
    for out in SENSOR_OUTPUTS:
        table = read_table(spark, lake, out.zone, out.name, DELIVERY, family=SENSOR_FAMILY)
        written = [(f.name, f.dataType.simpleString()) for f in table.schema]
        assert schema_differences(out, written) == [], out.asset_key
        if not out.open_schema:
            assert written == [(c.name, c.type) for c in out.columns], out.asset_key


def test_quarantine_holds_the_injected_impossible_readings(sensor_run: Any, spark: Any) -> None:
    lake, generated, _, _ = sensor_run
    rows = read_table(spark, lake, "quarantine", "sensor", DELIVERY, family=SENSOR_FAMILY)
    reasons = {tuple(r[0]): r[1] for r in rows.groupBy(REJECT_REASONS).count().collect()}
    faults = generated.faults
    implausible = faults["heart_rate_implausible"] + faults["steps_implausible"]
    assert reasons == {("plausible_range",): implausible}
    curated = read_lineage(
        LakeLayout(str(lake), family=SENSOR_FAMILY), "curated", "sensor", DELIVERY
    )
    assert curated is not None
    assert curated["rows"]["quarantined"] == implausible
    assert curated["rows"]["collapsed"] == faults["duplicate_rows"]
    minutes = read_table(spark, lake, "curated", "sensor", DELIVERY, family=SENSOR_FAMILY)
    worn = minutes.agg(F.sum("SECONDS_WORN")).first()
    assert worn is not None
    assert generated.rows == worn[0] + implausible + faults["duplicate_rows"]


def test_features_are_the_generators_truth(sensor_run: Any, spark: Any) -> None:
    lake, generated, _, key = sensor_run
    rows = read_table(spark, lake, "features", "sensor_daily", DELIVERY, family=SENSOR_FAMILY)
    found = {(r.subject_pseudonym, r.wear_day): r for r in rows.collect()}
    assert len(found) == len(generated.truth)
    first = min(t.day for t in generated.truth)
    for truth in generated.truth:
        pseudonym = hmac.new(
            key.encode(), f"{STUDY}/{truth.usubjid}".encode(), hashlib.sha256
        ).hexdigest()
        day = found[(pseudonym, (truth.day - first).days + 1)]
        assert (day.total_steps, day.wear_minutes) == (truth.total_steps, truth.wear_minutes)
        assert (day.hr_min, day.hr_max, day.hr_mean) == (truth.hr_min, truth.hr_max, truth.hr_mean)
        assert day.resting_hr == pytest.approx(truth.resting_hr, rel=1e-12)


def test_checks_run_alone_agree_with_the_materialization(sensor_run: Any) -> None:
    """The `sensor_checks` job re-evaluates the committed upload batch without writing: every
    check gives the verdict it gave when written, and the daily features their grain figures."""
    lake, _, result, _ = sensor_run
    alone = run_family_checks(lake, DELIVERY, SENSOR_FAMILY, SENSOR_ASSETS)
    assert_checks_alone_agree(
        result,
        alone,
        ("features_sensor_daily", "one_row_per_subject_day"),
        ("rows", "subject_days", "distinct_subject_days"),
    )
