"""The pipeline entry point's command line: each stage's own, in the graph's order."""

from __future__ import annotations

import pytest

from spark_jobs.contracts.layout import Delivery
from spark_jobs.pipeline import parse_args

COMMON = "--lake /tmp/lake --study S01 --delivery 2024-01-15"


def test_each_stage_is_parsed_by_its_own_job() -> None:
    stages = parse_args(
        [
            "--stage",
            f"ingest {COMMON} --datasets vs,dm",
            "--stage",
            f"curate {COMMON} --datasets vs",
            "--stage",
            f"features {COMMON} --key-env MY_KEY",
        ]
    )
    assert [s.name for s in stages] == ["ingest", "curate", "features"]
    assert stages[0].args.datasets == ("dm", "vs")  # contract order, as ingest.py parses it
    assert stages[1].args.datasets == ("vs",)
    assert stages[2].args.key_env == "MY_KEY"
    assert all(
        s.single_delivery and s.args.job.delivery == Delivery("S01", "2024-01-15") for s in stages
    )


@pytest.mark.parametrize(
    "stages",
    [
        [f"curate {COMMON}", f"ingest {COMMON}"],  # out of order
        [f"ingest {COMMON}", f"ingest {COMMON}"],  # twice
        [f"query {COMMON}"],  # not a stage
        [""],
    ],
)
def test_stages_out_of_order_or_unknown_are_refused(stages: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args([a for text in stages for a in ("--stage", text)])


def test_a_later_stage_of_another_family_reads_that_familys_assets() -> None:
    """A blocking failure of raw_sensor must stop the sensor curate stage of the application."""
    common = "--lake /tmp/lake --study S01 --delivery 2024-01-15"
    stages = parse_args(
        [
            *("--stage", f"ingest {common} --family sensor"),
            *("--stage", f"curate {common} --family sensor"),
            *("--stage", f"features {common} --family sensor --key-env K"),
        ]
    )
    assert [s.reads for s in stages] == [
        frozenset(),  # raw reads the landed files, no asset
        frozenset({"raw_sensor"}),
        frozenset({"curated_sensor"}),
    ]
