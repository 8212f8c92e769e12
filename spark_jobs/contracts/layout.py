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

    def study_landing(self, study: str) -> str:
        """The folder (or S3 prefix) holding every delivery of a study."""
        return f"{self.zone(Zone.LANDING)}/{study}"

    def landing(self, delivery: Delivery) -> str:
        return f"{self.study_landing(delivery.study)}/{delivery.delivery}"

    def landing_staging(self, delivery: Delivery, token: str) -> str:
        """Where `land` copies a delivery before renaming it into place (hidden: a dot)."""
        return f"{self.zone(Zone.LANDING)}/{delivery.study}/.{delivery.delivery}.landing-{token}"

    def manifest(self, delivery: Delivery) -> str:
        """The `_delivery.json` that lists a landed delivery's files, sizes and sha256."""
        return f"{self.landing(delivery)}/{MANIFEST_NAME}"

    def dataset(self, zone: str, name: str) -> str:
        return f"{self.zone(zone)}/{name}"

    def table_files(self, zone: str, name: str, delivery: Delivery) -> str:
        """Where an Iceberg table keeps the data files of a delivery's partition."""
        return f"{self.dataset(zone, name)}/data/{delivery.hive_path}"

    def system_table(self, name: str) -> str:
        """Location of a platform table that belongs to no zone (`system.lineage`)."""
        return f"{self.root}/{_SYSTEM}/{name}"

    @property
    def catalog_db(self) -> str:
        """The SQLite file of the local Iceberg catalog, under a local lake."""
        return f"{self.root}/{_SYSTEM}/catalog.sqlite"

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
        """A delivery's dossier; another family's deliveries may share the study and the
        delivery id, so their dossiers are named by family too."""
        family = "" if self.family == CLINICAL_FAMILY else f"{self.family}_"
        return f"{self.dossiers_dir}/{family}{delivery.study}_{delivery.delivery}.md"
