"""Lake layout: where each zone keeps each dataset partition, identical locally and on S3.

Hive-style `study=<S>/delivery=<D>` directories let Spark, Athena and Glue read a zone's
dataset as one table with partition columns.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
from dataclasses import dataclass
from enum import StrEnum


class Zone(StrEnum):
    """Where a dataset lives in the lake; every zone but landing holds Parquet partitions."""

    LANDING = "landing"
    RAW = "raw"
    CURATED = "curated"
    QUARANTINE = "quarantine"
    FEATURES = "features"


ZONES = tuple(z.value for z in Zone)
CLINICAL_FAMILY = "clinical"
MANIFEST_NAME = "_delivery.json"
LINEAGE_NAME = "_lineage.json"
REJECTED_FILES_DATASET = "rejected_files"
_SYSTEM = "_system"

_DELIVERY_DIR = "delivery="
_STUDY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
_DELIVERY = re.compile(r"^(\d{4}-\d{2}-\d{2})(_[2-9]|_[1-9][0-9]+)?$")


class PartitionKeyError(ValueError):
    """A study or delivery id that cannot name a partition."""


@functools.total_ordering
@dataclass(frozen=True)
class Delivery:
    """One delivery of one study: the unit of partitioning (`STUDY/YYYY-MM-DD[_n]`)."""

    study: str
    delivery: str

    def __post_init__(self) -> None:
        if not _STUDY.fullmatch(self.study):
            raise PartitionKeyError(
                f"study {self.study!r} is not a valid study id (letters, digits, '_' and '-', "
                "at most 40, starting with a letter or digit)"
            )
        match = _DELIVERY.fullmatch(self.delivery)
        if not match:
            raise PartitionKeyError(
                f"delivery {self.delivery!r} is not a transfer date YYYY-MM-DD "
                "(with _2, _3 ... for further transfers on one day)"
            )
        try:
            dt.date.fromisoformat(match.group(1))
        except ValueError:
            raise PartitionKeyError(
                f"delivery {self.delivery!r} is not a real calendar date"
            ) from None

    @property
    def key(self) -> str:
        return f"{self.study}/{self.delivery}"

    @property
    def sort_key(self) -> tuple[str, str, int]:
        """Chronological order: by date, then transfer number (`_10` after `_9`)."""
        return (self.study, *delivery_order(self.delivery))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Delivery):
            return NotImplemented
        return self.sort_key < other.sort_key

    @classmethod
    def from_key(cls, key: str) -> Delivery:
        study, sep, delivery = key.partition("/")
        if not sep:
            raise PartitionKeyError(f"partition key {key!r} is not of the form STUDY/DELIVERY")
        return cls(study, delivery)

    @property
    def hive_path(self) -> str:
        return f"study={self.study}/{_DELIVERY_DIR}{self.delivery}"


def delivery_order(delivery: str) -> tuple[str, int]:
    """(date, transfer number) of a delivery id; the first transfer of a day is number 1."""
    date, _, number = delivery.partition("_")
    return date, int(number) if number.isdigit() else 1


def next_delivery(delivery: str) -> str:
    """The id of the next transfer on the same day: 2024-01-15 -> 2024-01-15_2, _2 -> _3."""
    date, number = delivery_order(delivery)
    return f"{date}_{number + 1}"


def deliveries_in(entry_names: list[str]) -> list[str]:
    """Delivery ids among the entries of a `study=` directory, in delivery order."""
    found = [e.removeprefix(_DELIVERY_DIR) for e in entry_names if e.startswith(_DELIVERY_DIR)]
    return sorted((d for d in found if _DELIVERY.fullmatch(d)), key=delivery_order)


def normalize_lake_uri(uri: str) -> str:
    """An absolute URI for the lake root: `s3://...` unchanged, local paths as `file:/abs`."""
    uri = uri.rstrip("/")
    if re.match(r"^[a-z][a-z0-9+.-]*://", uri) or uri.startswith("file:"):
        return uri
    return "file:" + os.path.abspath(os.path.expanduser(uri))


def local_path(uri: str) -> str:
    """The filesystem path of a `file:` URI (or of a plain path)."""
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if uri.startswith("file:"):
        return uri[len("file:") :]
    if "://" in uri:
        raise ValueError(f"{uri} is not on the local filesystem")
    return uri


@dataclass(frozen=True)
class LakeLayout:
    """Paths of every zone under one lake root URI: the only place a lake path is spelled."""

    root: str
    family: str = CLINICAL_FAMILY

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", normalize_lake_uri(self.root))

    def zone(self, zone: str) -> str:
        if zone not in ZONES:
            raise ValueError(f"unknown zone {zone!r}; zones are {ZONES}")
        return f"{self.root}/{zone}/{self.family}"

    def landing(self, delivery: Delivery) -> str:
        return f"{self.zone(Zone.LANDING)}/{delivery.study}/{delivery.delivery}"

    def landing_staging(self, delivery: Delivery, token: str) -> str:
        """Where `land` copies a delivery before renaming it into place (hidden: a dot)."""
        return f"{self.zone(Zone.LANDING)}/{delivery.study}/.{delivery.delivery}.landing-{token}"

    def manifest(self, delivery: Delivery) -> str:
        """The `_delivery.json` that lists a landed delivery's files, sizes and sha256."""
        return f"{self.landing(delivery)}/{MANIFEST_NAME}"

    def dataset(self, zone: str, name: str) -> str:
        return f"{self.zone(zone)}/{name}"

    def partition(self, zone: str, name: str, delivery: Delivery) -> str:
        return f"{self.dataset(zone, name)}/{delivery.hive_path}"

    def lineage(self, zone: str, name: str, delivery: Delivery) -> str:
        """The `_lineage.json` record committed inside a partition."""
        return self.record_in(self.partition(zone, name, delivery))

    def study_dir(self, zone: str, name: str, study: str) -> str:
        return f"{self.dataset(zone, name)}/study={study}"

    def staging(self, zone: str, name: str, run_id: str, delivery: Delivery) -> str:
        """Where a run writes a partition before committing it (Spark skips `_` paths)."""
        return f"{self.dataset(zone, name)}/_staging/{run_id}-{delivery.study}-{delivery.delivery}"

    def trash_dir(self, zone: str, name: str) -> str:
        return f"{self.dataset(zone, name)}/_trash"

    def trash(self, zone: str, name: str, run_id: str, delivery: Delivery) -> str:
        """Where a replaced partition waits while its successor is renamed into place."""
        return f"{self.trash_dir(zone, name)}/{run_id}-{delivery.study}-{delivery.delivery}"

    @staticmethod
    def record_in(partition_uri: str) -> str:
        """The lineage record inside a partition folder, staged or committed."""
        return f"{partition_uri}/{LINEAGE_NAME}"

    def rejected_files(self, delivery: Delivery) -> str:
        return self.partition(Zone.QUARANTINE, REJECTED_FILES_DATASET, delivery)

    def rejected_file(self, delivery: Delivery, file_name: str) -> str:
        """The record of one landing file that could not be ingested."""
        return f"{self.rejected_files(delivery)}/{file_name}.json"

    @property
    def code_dir(self) -> str:
        """Where content-hashed `spark_jobs` bundles are kept, for audit and for EMR."""
        return f"{self.root}/{_SYSTEM}/code"

    @property
    def logs_dir(self) -> str:
        return f"{self.root}/{_SYSTEM}/logs"

    def run_log(self, run_id: str, name: str) -> str:
        """A Spark log of one Dagster run (local launcher)."""
        return f"{self.logs_dir}/{run_id}/{name}"

    @property
    def dossiers_dir(self) -> str:
        """Where `make demo` leaves the audit dossiers it renders."""
        return f"{self.root}/{_SYSTEM}/dossiers"

    def dossier(self, delivery: Delivery) -> str:
        return f"{self.dossiers_dir}/{delivery.study}_{delivery.delivery}.md"
