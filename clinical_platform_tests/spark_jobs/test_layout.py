"""Partition keys and lake paths (`spark_jobs.contracts.layout`), identical locally and on S3."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spark_jobs.contracts.layout import (
    Delivery,
    LakeLayout,
    PartitionKeyError,
    local_path,
    normalize_lake_uri,
)

# ---------------------------------------------------------------------------- Delivery


@pytest.mark.parametrize("study", ["CDISCPILOT01", "S", "abc-01_X", "9LIVES", "A" * 40])
def test_valid_study_ids(study: str) -> None:
    """Letters, digits, '_' and '-' up to 40 characters make a study id."""
    delivery = Delivery(study, "2024-01-15")
    assert delivery.key == f"{study}/2024-01-15"


@pytest.mark.parametrize(
    "study", ["", "-S01", "_S01", "S 01", "S/01", "S.01", "A" * 41, "STÜDY", "S01;rm"]
)
def test_bad_study_ids_are_refused(study: str) -> None:
    """Study ids end up in paths and partition keys: no blanks, slashes, dots or over 40."""
    with pytest.raises(PartitionKeyError, match="is not a valid study id"):
        Delivery(study, "2024-01-15")


@pytest.mark.parametrize(
    "delivery",
    ["2024-01-15", "2024-02-29", "2024-01-15_2", "2024-01-15_9", "2024-01-15_10", "2024-01-15_123"],
)
def test_valid_delivery_ids(delivery: str) -> None:
    """A transfer date, with _2 and later suffixes (including two digits), is a delivery id."""
    assert Delivery("S01", delivery).delivery == delivery


@pytest.mark.parametrize(
    "delivery",
    [
        "2024-1-15",
        "20240115",
        "2024-01-15_1",
        "2024-01-15_0",
        "2024-01-15_02",
        "2024-01-15-2",
        "2024-01-15_",
        "latest",
        "2024-01-15_2_2",
        "2024-01-15T00:00",
        "",
    ],
)
def test_malformed_delivery_ids_are_refused(delivery: str) -> None:
    """A delivery is a transfer date, optionally _2, _3 ... (there is no _1: that is the date)."""
    with pytest.raises(PartitionKeyError, match="is not a transfer date YYYY-MM-DD"):
        Delivery("S01", delivery)


@pytest.mark.parametrize(
    "delivery", ["2024-13-01", "2024-02-30", "2023-02-29", "2024-00-10", "2024-04-31_2"]
)
def test_impossible_calendar_dates_are_refused(delivery: str) -> None:
    """Well-formed but impossible dates (month 13, 30 February) are refused."""
    with pytest.raises(PartitionKeyError, match="is not a real calendar date"):
        Delivery("S01", delivery)


def test_deliveries_of_one_day_sort_in_transfer_order() -> None:
    """The first transfer (no suffix) sorts before _2, _3, and all before the next day."""
    keys = ["2024-01-16", "2024-01-15_3", "2024-01-15", "2024-01-15_2", "2024-01-14_2"]
    ordered = sorted(Delivery("S01", k) for k in keys)
    assert [d.delivery for d in ordered] == [
        "2024-01-14_2",
        "2024-01-15",
        "2024-01-15_2",
        "2024-01-15_3",
        "2024-01-16",
    ]


def test_tenth_transfer_of_a_day_sorts_after_the_ninth() -> None:
    """The regex accepts _10 and beyond, so ordering must be numeric in the suffix."""
    ordered = sorted(
        [
            Delivery("S01", "2024-01-15_10"),
            Delivery("S01", "2024-01-15_9"),
            Delivery("S01", "2024-01-15_2"),
        ]
    )
    assert [d.delivery for d in ordered] == ["2024-01-15_2", "2024-01-15_9", "2024-01-15_10"]


@pytest.mark.parametrize(("study", "delivery"), [("S01\n", "2024-01-15"), ("S01", "2024-01-15\n")])
def test_trailing_newline_is_refused(study: str, delivery: str) -> None:
    """A newline would end up in lake paths and partition keys."""
    with pytest.raises(PartitionKeyError):
        Delivery(study, delivery)


def test_key_round_trip_and_hive_path() -> None:
    """A partition key parses back into the same delivery and its hive path."""
    delivery = Delivery.from_key("CDISCPILOT01/2024-01-15_2")
    assert delivery == Delivery("CDISCPILOT01", "2024-01-15_2")
    assert delivery.key == "CDISCPILOT01/2024-01-15_2"
    assert delivery.hive_path == "study=CDISCPILOT01/delivery=2024-01-15_2"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("CDISCPILOT01", "is not of the form STUDY/DELIVERY"),
        ("", "is not of the form STUDY/DELIVERY"),
        ("/2024-01-15", "is not a valid study id"),
        ("S01/", "is not a transfer date"),
        ("S01/2024-01-15/extra", "is not a transfer date"),
        ("S01/2024-02-30", "is not a real calendar date"),
    ],
)
def test_from_key_errors(key: str, message: str) -> None:
    """Bad keys (from a sensor, the UI or the CLI) raise PartitionKeyError, never crash oddly."""
    with pytest.raises(PartitionKeyError, match=message):
        Delivery.from_key(key)


def test_partition_key_error_is_a_value_error() -> None:
    """Callers catching ValueError also catch bad partition keys."""
    assert issubclass(PartitionKeyError, ValueError)


# ---------------------------------------------------------------------------- LakeLayout

DELIVERY = Delivery("S01", "2024-01-15")


def test_relative_local_root_becomes_absolute_file_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative lake path is resolved once, so Spark and Dagster agree on where it is."""
    monkeypatch.chdir(tmp_path)
    layout = LakeLayout(".lake/")
    assert layout.root == f"file:{tmp_path}/.lake"
    assert layout.landing(DELIVERY) == f"file:{tmp_path}/.lake/landing/clinical/S01/2024-01-15"
    assert local_path(layout.landing(DELIVERY)) == (
        f"{tmp_path}/.lake/landing/clinical/S01/2024-01-15"
    )


def test_home_relative_root_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A lake under ~ is expanded to the user's home folder."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert normalize_lake_uri("~/lake") == f"file:{tmp_path}/lake"


@pytest.mark.parametrize(
    ("uri", "root"),
    [
        ("s3://bucket/prefix", "s3://bucket/prefix"),
        ("s3://bucket/prefix/", "s3://bucket/prefix"),
        ("s3a://bucket", "s3a://bucket"),
        ("file:/data/lake", "file:/data/lake"),
        ("file:///data/lake/", "file:///data/lake"),
        ("/data/lake/", "file:/data/lake"),
    ],
)
def test_roots_are_normalised(uri: str, root: str) -> None:
    """Trailing slashes go; URIs keep their scheme; plain paths become file: URIs."""
    assert LakeLayout(uri).root == root


def test_s3_paths() -> None:
    """On S3 every zone, partition and system path hangs off the bucket prefix."""
    layout = LakeLayout("s3://bucket/prefix/")
    assert layout.zone("raw") == "s3://bucket/prefix/raw/clinical"
    assert layout.landing(DELIVERY) == "s3://bucket/prefix/landing/clinical/S01/2024-01-15"
    assert layout.dataset("curated", "dm") == "s3://bucket/prefix/curated/clinical/dm"
    assert layout.table_files("curated", "dm", DELIVERY) == (
        "s3://bucket/prefix/curated/clinical/dm/data/study=S01/delivery=2024-01-15"
    )
    assert layout.system_table("lineage") == "s3://bucket/prefix/_system/lineage"
    assert layout.code_dir == "s3://bucket/prefix/_system/code"
    assert layout.logs_dir == "s3://bucket/prefix/_system/logs"
    with pytest.raises(ValueError, match="is not on the local filesystem"):
        local_path(layout.root)


def test_other_families_share_the_root() -> None:
    """A source family other than clinical gets its own subtree in each zone."""
    layout = LakeLayout("/data/lake", family="sensor")
    assert layout.table_files("features", "daily", DELIVERY) == (
        "file:/data/lake/features/sensor/daily/data/study=S01/delivery=2024-01-15"
    )


def test_unknown_zone_is_refused() -> None:
    """A misspelt zone is an error, not a new folder in the lake."""
    with pytest.raises(ValueError, match="unknown zone 'gold'"):
        LakeLayout("/data/lake").zone("gold")


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("file:/data/lake", "/data/lake"),
        ("file:///data/lake", "/data/lake"),
        ("/data/lake", "/data/lake"),
        ("relative/lake", "relative/lake"),
    ],
)
def test_local_path(uri: str, path: str) -> None:
    """file: URIs (one or three slashes) and plain paths map to filesystem paths."""
    assert local_path(uri) == path


def test_local_root_is_absolute_even_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built in one directory, the root does not change when the process later changes dir."""
    monkeypatch.chdir(tmp_path)
    layout = LakeLayout("lake")
    monkeypatch.chdir(os.sep)
    assert layout.zone("raw") == f"file:{tmp_path}/lake/raw/clinical"
