"""Where datasets live as tables: Iceberg tables in one catalog, named `<zone>.<family>_<dataset>`.

The catalog is a deployment setting (an Iceberg JDBC catalog on a SQLite file locally, the Glue
Data Catalog on AWS); the jobs only ever see the catalog name `clinical`. The Spark settings of
each kind are built here, so the local launcher, the tests and the EMR configuration agree.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

CATALOG = "clinical"
PARTITION_COLUMNS = ("study", "delivery")
SYSTEM_NAMESPACE = "system"
LINEAGE_TABLE = f"{SYSTEM_NAMESPACE}.lineage"
# The lineage record of every committed partition, one row per commit (append-only).
LINEAGE_COLUMNS = (
    ("table_name", "string"),
    ("study", "string"),
    ("delivery", "string"),
    ("run_id", "string"),
    ("snapshot_id", "bigint"),
    ("record_sha256", "string"),
    ("record", "string"),
    ("committed_at", "string"),
)
# A test hook: the job exits like a kill -9 after staging, before publishing, when this names
# the table being written (or is "*"), to prove a half-done run changes nothing visible.
FAULT_BEFORE_PUBLISH_ENV = "CLINICAL_FAULT_BEFORE_PUBLISH"
# Snapshot summary properties every commit of the platform carries.
RUN_ID_PROPERTY = "clinical.run-id"
DELIVERY_PROPERTY = "clinical.delivery"
CODE_VERSION_PROPERTY = "clinical.code-version"
CONTRACT_VERSION_PROPERTY = "clinical.contract-version"
ICEBERG_SQL_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
_STAGE_NAME = re.compile(r"[^A-Za-z0-9]+")


class CatalogKind(StrEnum):
    SQLITE = "sqlite"
    GLUE = "glue"


def table_name(zone: str, family: str, dataset: str) -> str:
    """`curated.clinical_vs`: the zone is the namespace, so families never collide."""
    return f"{zone}.{family}_{dataset}"


def qualified(name: str) -> str:
    """A table name in the platform's catalog, as the jobs address it."""
    return f"{CATALOG}.{name}"


def stage_branch(study: str, delivery: str, run_id: str) -> str:
    """The branch a run writes a partition to before it is published to `main`."""
    return _STAGE_NAME.sub("_", f"stage_{study}_{delivery}_{run_id[:12]}")


def fingerprint(value: object) -> str:
    """A short, stable hash of a contract (the `clinical.contract-version` table property)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class CatalogSettings:
    """Which catalog, where its SQLite file is, and how to reach S3 (an emulator's endpoint)."""

    kind: CatalogKind
    warehouse: str | None  # the lake root URI; None where each job sets it (EMR)
    sqlite_path: str | None = None
    s3_endpoint: str | None = None
    region: str | None = None


def spark_conf(settings: CatalogSettings) -> dict[str, str]:
    """The Spark settings that make `clinical` an Iceberg catalog of this kind."""
    prefix = f"spark.sql.catalog.{CATALOG}"
    conf = {
        "spark.sql.extensions": ICEBERG_SQL_EXTENSIONS,
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        "spark.sql.defaultCatalog": CATALOG,
    }
    if settings.warehouse:
        conf[f"{prefix}.warehouse"] = settings.warehouse
    if settings.kind is CatalogKind.SQLITE:
        if not settings.sqlite_path:
            raise ValueError("a SQLite catalog needs the path of its database file")
        conf |= {
            f"{prefix}.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
            f"{prefix}.uri": f"jdbc:sqlite:{settings.sqlite_path}",
            f"{prefix}.jdbc.schema-version": "V1",
        }
    else:
        conf[f"{prefix}.catalog-impl"] = "org.apache.iceberg.aws.glue.GlueCatalog"
    if settings.kind is CatalogKind.GLUE or (settings.warehouse or "").startswith("s3"):
        conf |= _s3_conf(prefix, settings)
    return conf


def _s3_conf(prefix: str, settings: CatalogSettings) -> Mapping[str, str]:
    """Iceberg's S3FileIO for table files; s3a for Spark's own reads (s3:// mapped onto it)."""
    conf = {f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO"}
    if settings.s3_endpoint or settings.kind is CatalogKind.SQLITE:
        # Off EMR there is no EMRFS: Spark's own s3:// reads go through hadoop-aws's s3a.
        conf["spark.hadoop.fs.s3.impl"] = "org.apache.hadoop.fs.s3a.S3AFileSystem"
    if settings.region:
        conf[f"{prefix}.client.region"] = settings.region
    if settings.s3_endpoint:
        conf |= {
            f"{prefix}.s3.endpoint": settings.s3_endpoint,
            f"{prefix}.s3.path-style-access": "true",
            f"{prefix}.glue.endpoint": settings.s3_endpoint,
            "spark.hadoop.fs.s3a.endpoint": settings.s3_endpoint,
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
            "spark.hadoop.fs.s3a.aws.credentials.provider": (
                "com.amazonaws.auth.EnvironmentVariableCredentialsProvider"
            ),
        }
    return conf


def emr_catalog_conf() -> dict[str, str]:
    """The `clinical` catalog on EMR: Glue, S3FileIO; the warehouse comes from each job."""
    return spark_conf(CatalogSettings(kind=CatalogKind.GLUE, warehouse=None))
