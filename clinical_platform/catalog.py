"""The lake's Iceberg catalog from the Dagster side: which one, and reading it without Spark.

Spark jobs reach the catalog through the settings the launcher gives spark-submit
(`spark_conf`); commands and the audit dossier read table metadata and `system.lineage`
through pyiceberg, so nothing here starts Spark.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clinical_platform import settings
from spark_jobs.contracts.layout import Delivery, LakeLayout, local_path
from spark_jobs.contracts.tables import (
    CATALOG,
    LINEAGE_TABLE,
    CatalogKind,
    CatalogSettings,
)


class CatalogError(ValueError):
    """The catalog cannot be used as configured; the message says what to set."""


def catalog_settings(
    layout: LakeLayout, kind: str | None = None, sqlite_path: str | None = None
) -> CatalogSettings:
    """The catalog of a lake: SQLite under a local lake unless set otherwise, or Glue."""
    chosen = CatalogKind(kind or settings.catalog_kind())
    path = sqlite_path or settings.optional(settings.CATALOG_DB_VAR)
    if chosen is CatalogKind.SQLITE and not path:
        if not layout.root.startswith("file:"):
            raise CatalogError(
                f"{layout.root}: the SQLite catalog of an S3 lake is a local file; set "
                f"{settings.CATALOG_DB_VAR} (or {settings.CATALOG_VAR}=glue)"
            )
        path = local_path(layout.catalog_db)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return CatalogSettings(
        kind=chosen,
        warehouse=layout.root,
        sqlite_path=path,
        s3_endpoint=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
    )


def open_catalog(catalog: CatalogSettings) -> Any:
    """A pyiceberg catalog on the same tables the Spark jobs write."""
    properties: dict[str, str] = {"warehouse": catalog.warehouse} if catalog.warehouse else {}
    if catalog.s3_endpoint:
        properties |= {"s3.endpoint": catalog.s3_endpoint, "s3.path-style-access": "true"}
        properties["glue.endpoint"] = catalog.s3_endpoint
    if catalog.region:
        properties |= {"s3.region": catalog.region, "glue.region": catalog.region}
    if catalog.kind is CatalogKind.SQLITE:
        from pyiceberg.catalog.sql import SqlCatalog

        return SqlCatalog(CATALOG, uri=f"sqlite:///{catalog.sqlite_path}", **properties)
    from pyiceberg.catalog.glue import GlueCatalog

    return GlueCatalog(CATALOG, **properties)


def lineage_records(
    catalog: Any, table: str, delivery: Delivery | None = None, study: str | None = None
) -> list[dict[str, Any]]:
    """Lineage records of a table's partitions, oldest commit first (filtered as asked)."""
    condition = {"table_name": table}
    if delivery is not None:
        condition |= {"study": delivery.study, "delivery": delivery.delivery}
    elif study is not None:
        condition["study"] = study
    return [_with_hash(r) for r in _lineage_rows(catalog, condition)]


class LineageIndex:
    """The lineage records of each study asked about, read in one scan of `system.lineage`
    per study and then served from memory (a dossier asks for ~60 partitions' records; each
    scan reads the table's manifests and files again).

    For one command's reading of a lake that does not change meanwhile (dossier, verify).
    """

    def __init__(self, catalog: Any) -> None:
        self.catalog = catalog
        # study -> (table, delivery) -> (committed_at, record), oldest commit first
        self._studies: dict[str, dict[tuple[str, str], list[tuple[Any, dict[str, Any]]]]] = {}

    def records(
        self, table: str, delivery: Delivery | None = None, study: str | None = None
    ) -> list[dict[str, Any]]:
        """As `lineage_records`, from the study's records read once."""
        name = delivery.study if delivery is not None else study
        if name is None:
            return lineage_records(self.catalog, table)
        found = self._study(name)
        if delivery is not None:
            return [record for _, record in found.get((table, delivery.delivery), [])]
        rows = [pair for (t, _), pairs in found.items() if t == table for pair in pairs]
        return [record for _, record in sorted(rows, key=lambda pair: pair[0])]

    def latest(self, table: str, delivery: Delivery) -> dict[str, Any] | None:
        records = self.records(table, delivery)
        return records[-1] if records else None

    def _study(self, study: str) -> dict[tuple[str, str], list[tuple[Any, dict[str, Any]]]]:
        if study not in self._studies:
            grouped: dict[tuple[str, str], list[tuple[Any, dict[str, Any]]]] = {}
            for row in _lineage_rows(self.catalog, {"study": study}):
                key = (row["table_name"], row["delivery"])
                grouped.setdefault(key, []).append((row["committed_at"], _with_hash(row)))
            self._studies[study] = grouped
        return self._studies[study]


def _lineage_rows(catalog: Any, condition: Mapping[str, str]) -> list[dict[str, Any]]:
    """Rows of `system.lineage` matching the condition, oldest commit first."""
    from pyiceberg.exceptions import NoSuchTableError

    try:
        lineage = catalog.load_table(LINEAGE_TABLE)
    except NoSuchTableError:
        return []
    rows = lineage.scan(row_filter=_equal(condition)).to_arrow().to_pylist()
    rows.sort(key=lambda r: r["committed_at"])
    return rows


def _with_hash(row: Mapping[str, Any]) -> dict[str, Any]:
    return {**json.loads(row["record"]), "record_sha256": row["record_sha256"]}


def latest_record(catalog: Any, table: str, delivery: Delivery) -> dict[str, Any] | None:
    records = lineage_records(catalog, table, delivery)
    return records[-1] if records else None


def rows_of(catalog: Any, table: str, delivery: Delivery) -> list[dict[str, Any]]:
    """The published rows of one partition (small tables only: rejected files, lineage)."""
    from pyiceberg.exceptions import NoSuchTableError

    try:
        loaded = catalog.load_table(table)
    except NoSuchTableError:
        return []
    condition = _equal({"study": delivery.study, "delivery": delivery.delivery})
    return loaded.scan(row_filter=condition).to_arrow().to_pylist()


def _equal(values: Mapping[str, str]) -> str:
    """A pyiceberg row filter: every column equal to its text value."""
    return " AND ".join(
        f"{name} = '{value.replace(chr(39), chr(39) * 2)}'" for name, value in values.items()
    )
