"""The landing sensor on an S3 lake (moto on 127.0.0.1) and on the local lake."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import boto3
import dagster as dg
import pytest

from clinical_platform.clinical.landing import LANDING_KEY, LandingPolicy
from clinical_platform.clinical.sensors import (
    DELIVERY_TAG,
    ENTRY_TAG,
    FAMILY_TAG,
    MANIFEST_TAG,
    LandingCursor,
    clinical_landing_sensor,
    evaluate,
    landing_sensor_of,
)
from clinical_platform.lake import ClinicalLake, land_delivery, read_manifest
from clinical_platform.landing_zone import landing_zone
from clinical_platform_tests.conftest import LAKE_BUCKET
from clinical_platform_tests.launchers.emulator import AwsEmulator
from spark_jobs.contracts.layout import MANIFEST_NAME, Delivery, LakeLayout, local_path

DM = b"STUDYID,USUBJID\nS01,S01-001\n"
AE = b"STUDYID,USUBJID,AETERM\nS01,S01-001,HEADACHE\n"
POLICY = LandingPolicy(quiet_period_seconds=60, verify_sha256_below_bytes=1 << 20)


def manifest_of(delivery: Delivery, files: dict[str, bytes]) -> bytes:
    listed = [
        {"name": n, "size": len(c), "sha256": hashlib.sha256(c).hexdigest()}
        for n, c in sorted(files.items())
    ]
    body = {"study": delivery.study, "delivery": delivery.delivery, "files": listed}
    return json.dumps(body).encode()


class Landing:
    """Puts objects into the S3 landing zone the way a CRO's transfer tool would."""

    def __init__(self, layout: LakeLayout) -> None:
        self.layout = layout
        self.client = boto3.client("s3")
        self.prefix = layout.zone("landing").split(f"{LAKE_BUCKET}/", 1)[1]

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=LAKE_BUCKET, Key=f"{self.prefix}/{key}", Body=body)

    def delivery(
        self, delivery: Delivery, files: dict[str, bytes], *, manifest: bool = True
    ) -> None:
        for name, content in files.items():
            self.put(f"{delivery.study}/{delivery.delivery}/{name}", content)
        if manifest:
            self.put(
                f"{delivery.study}/{delivery.delivery}/{MANIFEST_NAME}",
                manifest_of(delivery, files),
            )


def tick(
    layout: LakeLayout,
    instance: dg.DagsterInstance,
    cursor: str | None = None,
    policy: LandingPolicy = POLICY,
    sensor: dg.SensorDefinition = clinical_landing_sensor,
) -> dg.SensorResult:
    """One evaluation of the real sensor definition, with its resources."""
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"lake": ClinicalLake(uri=layout.root), "landing_policy": policy},
    )
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def requested(result: dg.SensorResult) -> list[str]:
    return [r.partition_key or "" for r in result.run_requests or []]


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def test_one_run_for_the_complete_delivery_then_the_late_one(
    s3_layout: LakeLayout, instance: dg.DagsterInstance
) -> None:
    """Three deliveries land: one incomplete, one complete, one under a bad key. Exactly one
    run request follows; the incomplete one starts once its files arrive; the same cursor
    again yields nothing."""
    landing = Landing(s3_layout)
    incomplete, complete = Delivery("S01", "2024-01-15"), Delivery("S01", "2024-02-01")
    landing.put("S01/2024-01-15/dm.csv", DM)
    landing.put(
        f"S01/2024-01-15/{MANIFEST_NAME}", manifest_of(incomplete, {"dm.csv": DM, "ae.csv": AE})
    )
    landing.delivery(complete, {"dm.csv": DM, "ae.csv": AE})
    landing.put("S01/not-a-delivery/dm.csv", DM)

    first = tick(s3_layout, instance)
    assert requested(first) == ["S01/2024-02-01"]
    run = (first.run_requests or [])[0]
    digest = hashlib.sha256(manifest_of(complete, {"dm.csv": DM, "ae.csv": AE})).hexdigest()
    assert run.run_key == f"S01/2024-02-01@{digest[:16]}"
    assert run.tags[MANIFEST_TAG] == digest and run.tags[DELIVERY_TAG] == "S01/2024-02-01"
    assert sorted(k.to_user_string() for k in run.asset_selection or []) == [
        "curated_ae",
        "curated_dm",
        "features_subject_profile",
        "raw_ae",
        "raw_dm",
    ]
    assert [r.partition_keys for r in first.dynamic_partitions_requests or []] == [
        ["S01/2024-02-01"]
    ]
    # The landing version the run's raw partitions will name (the UI's landing data version).
    [observed] = first.asset_events
    assert isinstance(observed, dg.AssetObservation)
    assert (observed.asset_key, observed.partition) == (LANDING_KEY, "S01/2024-02-01")
    assert (observed.tags or {})["dagster/data_version"] == digest
    cursor = LandingCursor.load(first.cursor)
    assert list(cursor.waiting) == ["S01/2024-01-15"]
    assert cursor.waiting["S01/2024-01-15"].note == "waiting for files the manifest lists: ae.csv"

    assert requested(tick(s3_layout, instance, first.cursor)) == []

    landing.put("S01/2024-01-15/ae.csv", AE)
    second = tick(s3_layout, instance, first.cursor)
    assert requested(second) == ["S01/2024-01-15"]
    assert LandingCursor.load(second.cursor).waiting == {}
    assert requested(tick(s3_layout, instance, second.cursor)) == []


def test_old_objects_do_not_cost_list_requests(
    aws_s3: AwsEmulator, s3_layout: LakeLayout, instance: dg.DagsterInstance, s3_calls: list[str]
) -> None:
    """A tick after 10,000 old objects issues as many list requests as after 10."""
    landing = Landing(s3_layout)
    counts = {}
    for old in (10, 10_000):
        aws_s3.reset()
        aws_s3.create_bucket(LAKE_BUCKET)
        put_many(aws_s3, f"{landing.prefix}/S01/2023-01-01", old)
        last = f"S01/2023-01-01/{old - 1:05d}.csv"
        cursor = LandingCursor(after={"S01": last}).dump()
        landing.delivery(Delivery("S01", "2024-02-01"), {"dm.csv": DM})
        s3_calls.clear()
        result = tick(s3_layout, instance, cursor)
        assert requested(result) == ["S01/2024-02-01"]
        counts[old] = s3_calls.count("ListObjectsV2")
    assert counts[10] == counts[10_000] == 2  # the studies, then what follows the cursor


def put_many(aws: AwsEmulator, prefix: str, count: int) -> None:
    """Many small objects straight into moto's store (uploading 10,000 takes too long)."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for number in range(count):
        backend.put_object(LAKE_BUCKET, f"{prefix}/{number:05d}.csv", b"x")


def test_manifestless_delivery_starts_after_its_quiet_period_once(
    s3_layout: LakeLayout, instance: dg.DagsterInstance
) -> None:
    """Without a manifest the listing must stay unchanged for the quiet period; then the
    sensor writes the manifest as `land` does and starts one run."""
    landing = Landing(s3_layout)
    delivery = Delivery("S01", "2024-03-01")
    landing.delivery(delivery, {"dm.csv": DM}, manifest=False)
    zone = landing_zone(s3_layout)

    def at(now: float, cursor: LandingCursor) -> list[str]:
        return [r.partition_key or "" for r in evaluate(zone, cursor, instance, POLICY, now).runs]

    cursor = LandingCursor()
    assert at(1000.0, cursor) == []
    assert at(1030.0, cursor) == []
    landing.put("S01/2024-03-01/ae.csv", AE)  # still arriving: the clock starts again
    assert at(1070.0, cursor) == []
    assert read_manifest(s3_layout, delivery) is None
    assert at(1100.0, cursor) == []
    assert at(1131.0, cursor) == ["S01/2024-03-01"]
    manifest = read_manifest(s3_layout, delivery)
    assert manifest is not None
    assert [(f["name"], f["size"], f["sha256"]) for f in manifest["files"]] == [
        ("ae.csv", len(AE), hashlib.sha256(AE).hexdigest()),
        ("dm.csv", len(DM), hashlib.sha256(DM).hexdigest()),
    ]
    assert (manifest["study"], manifest["delivery"]) == ("S01", "2024-03-01")
    assert at(1200.0, cursor) == []
    assert at(5000.0, cursor) == []


def test_bad_keys_never_stop_the_sensor(
    s3_layout: LakeLayout, instance: dg.DagsterInstance
) -> None:
    """Temporary, hidden, unsafe and case-clashing keys, unknown and empty files and a
    malformed manifest are each skipped or refused with a reason; the good delivery runs."""
    landing = Landing(s3_layout)
    landing.delivery(
        Delivery("S01", "2024-01-01"), {"dm.csv": DM, "dm.csv.tmp": b"x"}, manifest=False
    )
    landing.put("S01/2024-01-02/dm.csv._COPYING_", DM)
    landing.put("S01/2024-01-03/../escape.csv", DM)
    landing.put("S01//absolute.csv", DM)
    landing.delivery(Delivery("S01", "2024-01-04"), {"DM.csv": DM, "dm.csv": DM})
    landing.put(f"S01/2024-01-05/{MANIFEST_NAME}", b"{not json")
    landing.put("S01/2024-01-05/dm.csv", DM)
    landing.put("S01/.hidden/dm.csv", DM)
    landing.put("S01/readme.txt", b"about")
    landing.put("bad study!/2024-01-01/dm.csv", DM)
    good = {"dm.csv": DM, "notes.docx": b"doc", "ae.csv": b"", ".DS_Store": b"x"}
    landing.delivery(Delivery("S01", "2024-02-01"), good)

    zone = landing_zone(s3_layout)
    result = evaluate(zone, LandingCursor(), instance, POLICY, 0.0)
    assert [r.partition_key for r in result.runs] == ["S01/2024-02-01"]
    log = "\n".join(line for _, line in result.log)
    assert "S01/2024-01-01: waiting — transfer under way (dm.csv.tmp)" in log
    assert "S01/2024-01-02: waiting — transfer under way (dm.csv._COPYING_)" in log
    assert "S01/2024-01-03/../escape.csv skipped: empty, '.' or '..' path segment" in log
    assert "S01//absolute.csv skipped: empty, '.' or '..' path segment" in log
    assert "S01/2024-01-04: refused — file names differ only in case (DM.csv, dm.csv)" in log
    assert "S01/2024-01-05: refused — _delivery.json is malformed (JSONDecodeError" in log
    assert "S01/readme.txt skipped: not inside a delivery folder" in log
    assert "bad study!/ skipped: not a study folder" in log
    assert "S01/2024-02-01: notes.docx: unknown file type; ingest will reject it" in log
    assert "S01/2024-02-01: ae.csv: empty; ingest will reject it" in log
    assert ".hidden" not in log
    assert sorted(result.cursor.waiting) == [
        "S01/2024-01-01",
        "S01/2024-01-02",
        "S01/2024-01-04",
        "S01/2024-01-05",
    ]

    again = evaluate(zone, result.cursor, instance, POLICY, 1.0)
    assert again.runs == []
    assert again.log == []  # said once, not at every tick


def test_different_files_under_a_started_delivery_are_refused(
    s3_layout: LakeLayout, instance: dg.DagsterInstance
) -> None:
    """Deliveries are immutable: new files and a new manifest under a delivery that already
    ran start nothing and say why; the same files again start nothing either."""
    landing = Landing(s3_layout)
    delivery = Delivery("S01", "2024-01-15")
    landing.delivery(delivery, {"ae.csv": AE})
    first = tick(s3_layout, instance)
    request = (first.run_requests or [])[0]
    assert request.tags[ENTRY_TAG] == "sensor" and request.tags[FAMILY_TAG] == "clinical"
    # A run started before runs named their family is the clinical family's.
    before_families = {k: v for k, v in request.tags.items() if k != FAMILY_TAG}
    instance.add_run(dg.DagsterRun(job_name="__ASSET_JOB", run_id="r1", tags=before_families))

    landing.delivery(delivery, {"ae.csv": AE, "vs.csv": DM})
    cursor = LandingCursor.load(first.cursor)
    second = evaluate(landing_zone(s3_layout), cursor, instance, POLICY, 0.0)
    assert second.runs == []
    assert second.log == [
        (
            "warning",
            "S01/2024-01-15: refused — already landed with different files; deliveries are "
            "immutable, send the correction as a new transfer (…_2)",
        )
    ]


def test_local_lake_through_the_same_interface(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """On the local lake `land` and the sensor meet: one run, hidden staging folders ignored,
    and nothing for a delivery `clinical-platform materialize` already ran."""
    layout = LakeLayout(str(tmp_path / "lake"))
    source = tmp_path / "incoming"
    source.mkdir()
    (source / "dm.csv").write_bytes(DM)
    land_delivery(source, Delivery("S01", "2024-01-15"), layout)
    staging = Path(local_path(layout.landing_staging(Delivery("S01", "2024-01-16"), "123")))
    staging.mkdir(parents=True)
    (staging / "dm.csv").write_bytes(DM)

    first = tick(layout, instance)
    assert requested(first) == ["S01/2024-01-15"]
    assert requested(tick(layout, instance, first.cursor)) == []

    (source / "ae.csv").write_bytes(AE)
    land_delivery(source, Delivery("S01", "2024-01-16"), layout)
    second = tick(layout, instance, first.cursor)
    assert requested(second) == ["S01/2024-01-16"]
    zone = landing_zone(layout)
    assert [o.key for o in zone.objects("S01/", "S01/2024-01-15/dm.csv")] == [
        "S01/2024-01-16/_delivery.json",
        "S01/2024-01-16/ae.csv",
        "S01/2024-01-16/dm.csv",
    ]


def test_sha256_from_the_store_or_read_below_the_size_limit(
    tmp_path: Path, s3_layout: LakeLayout, instance: dg.DagsterInstance, s3_calls: list[str]
) -> None:
    """A file whose bytes differ from the manifest (same size) is refused. S3's stored
    checksum (`land` uploads with one) is used without reading the file; without one, only
    files under the size limit are read."""
    landing = Landing(s3_layout)
    forged = manifest_of(Delivery("S01", "2024-01-15"), {"dm.csv": DM.replace(b"1", b"2")})
    landing.put("S01/2024-01-15/dm.csv", DM)
    landing.put(f"S01/2024-01-15/{MANIFEST_NAME}", forged)
    zone = landing_zone(s3_layout)
    result = evaluate(zone, LandingCursor(), instance, POLICY, 0.0)
    assert result.runs == []
    assert result.log == [
        ("warning", "S01/2024-01-15: refused — dm.csv: SHA-256 differs from _delivery.json")
    ]

    blind = LandingPolicy(verify_sha256_below_bytes=0)
    assert [
        r.partition_key for r in evaluate(zone, LandingCursor(), instance, blind, 0.0).runs
    ] == ["S01/2024-01-15"]

    source = tmp_path / "incoming"
    source.mkdir()
    (source / "dm.csv").write_bytes(DM)
    land_delivery(source, Delivery("S02", "2024-01-15"), s3_layout)
    s3_calls.clear()
    cursor = LandingCursor(after={"S01": "S01/2024-01-15/dm.csv"})
    assert [r.partition_key for r in evaluate(zone, cursor, instance, blind, 0.0).runs] == [
        "S02/2024-01-15"
    ]
    assert s3_calls == [
        "ListObjectsV2",
        "ListObjectsV2",
        "ListObjectsV2",
        "GetObject",
        "HeadObject",
    ]
    assert zone.stored_sha256("S02/2024-01-15/dm.csv") == hashlib.sha256(DM).hexdigest()


def test_each_family_has_its_own_sensor_partitions_and_runs(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """Sensor readings, an omics batch and an SDTM delivery land under the same study and
    delivery id. Each family's sensor sees only its own landing zone and requests a run of its
    own assets, adds its own partition and observes its own landing source; a run of one family
    does not count as the other's."""
    lake, delivery = str(tmp_path / "lake"), Delivery("S01", "2024-01-15")
    carried = {
        "clinical": {"dm.csv": DM},
        "sensor": {
            "wrist_0001.csv": b"USUBJID,TIMESTAMP,HEART_RATE\nS01-001,2024-01-15T00:00:00Z,60\n"
        },
        "omics": {"counts_b1.csv": b"SAMPLE_ID,GENE_ID,COUNT\nX1,G1,3\n", "samples_b1.csv": DM},
    }
    for family, files in carried.items():
        source = tmp_path / family
        source.mkdir()
        for name, content in files.items():
            (source / name).write_bytes(content)
        land_delivery(source, delivery, LakeLayout(lake, family=family))

    expected = {
        "clinical": ["curated_dm", "features_subject_profile", "raw_dm"],
        "sensor": ["curated_sensor", "features_sensor_daily", "raw_sensor"],
        "omics": [
            "curated_counts",
            "curated_samples",
            "features_omics_top_genes",
            "raw_counts",
            "raw_samples",
        ],
    }
    for family, assets in expected.items():
        sensor = landing_sensor_of(family)
        assert sensor.name == f"{family}_landing_sensor"
        result = tick(LakeLayout(lake), instance, sensor=sensor)
        [run] = result.run_requests or []
        assert sorted(k.to_user_string() for k in run.asset_selection or []) == assets
        assert (run.partition_key, run.tags[FAMILY_TAG]) == (delivery.key, family)
        [added] = result.dynamic_partitions_requests or []
        assert (added.partitions_def_name, added.partition_keys) == (
            f"{family}_deliveries",
            [delivery.key],
        )
        [observed] = result.asset_events
        assert isinstance(observed, dg.AssetObservation)
        assert observed.asset_key == dg.AssetKey(f"landing_{family}")
        # Once the family's run exists, a fresh listing starts nothing more for it, and says
        # nothing: the other families' runs of the same key are not its own.
        instance.add_run(
            dg.DagsterRun(job_name="__ASSET_JOB", run_id=f"run-{family}", tags=run.tags)
        )
        again = evaluate(
            landing_zone(LakeLayout(lake, family=family)),
            LandingCursor(),
            instance,
            POLICY,
            0.0,
            family,
        )
        assert (again.runs, again.log) == ([], [])
