"""The Glue Data Catalog path, against moto: the same jobs register their Iceberg tables in
Glue instead of the SQLite catalog, on an S3 lake in the emulated S3.

moto answers every Glue call Iceberg's GlueCatalog makes here (GetDatabase, CreateDatabase,
GetTable, CreateTable, UpdateTable); it does not enforce UpdateTable's VersionId, so the
optimistic locking between concurrent commits is Glue's to prove, not this test's.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from clinical_platform.generators.sdtm import generate_sdtm
from clinical_platform.lake import land_delivery
from clinical_platform.lineage.dossier import render_dossier
from clinical_platform_tests.helpers import lake_catalog, lineage, materialize
from clinical_platform_tests.launchers.emulator import REGION, AwsEmulator
from spark_jobs.contracts.layout import Delivery, LakeLayout, Zone
from spark_jobs.contracts.outputs import output

pytestmark = pytest.mark.slow

FIRST = Delivery("SYNTH01", "2024-01-15")
SECOND = Delivery("SYNTH01", "2024-02-15")
BUCKET = "glue-lake"


def test_tables_are_registered_in_glue_with_the_contract_columns(
    aws: AwsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.client("s3").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    monkeypatch.setenv("CLINICAL_CATALOG", "glue")
    lake = f"s3://{BUCKET}/lake"
    instance = dg.DagsterInstance.ephemeral()
    for delivery, subjects in ((FIRST, 4), (SECOND, 5)):
        folder = tmp_path / delivery.delivery
        generate_sdtm(folder, subjects, study=delivery.study)
        land_delivery(folder, delivery, LakeLayout(lake))
        done = materialize(lake, delivery, selection=["raw_dm", "curated_dm"], instance=instance)
        assert done.success
    glue = aws.client("glue")
    databases = {d["Name"] for d in glue.get_databases()["DatabaseList"]}
    assert {"raw", "curated", "system"} <= databases
    table = glue.get_table(DatabaseName="curated", Name="clinical_dm")["Table"]
    assert table["Parameters"]["table_type"] == "ICEBERG"
    assert table["Parameters"]["metadata_location"].startswith(f"s3://{BUCKET}/lake/curated/")
    columns = [c["Name"] for c in table["StorageDescriptor"]["Columns"]]
    assert columns == list(output(Zone.CURATED, "dm").column_names)
    # One partition per delivery, each with its own rows.
    curated = lake_catalog(lake).load_table("curated.clinical_dm")
    partitions = curated.inspect.partitions().to_pylist()
    counts = {p["partition"]["delivery"]: p["record_count"] for p in partitions}
    assert counts == {FIRST.delivery: 4, SECOND.delivery: 5}
    assert lineage(lake, "curated", "dm", SECOND)["rows"]["out"] == 5
    assert "| curated_dm | accepted | 5 | 5 | 0 | 0 |" in render_dossier(LakeLayout(lake), SECOND)
