"""Level 2: the study's later deliveries, on the CDISC pilot's lake (after its first delivery).

A partial delivery (only LB) and a repeated one (the same files under a new key), through
`land` and `materialize` as a user runs them. Uses the session's pilot lake, so it runs
after `test_pilot_end_to_end.py` (file order) and adds deliveries only after 2024-01-15.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clinical_platform_tests.conftest import TEST_PSEUDONYM_KEY, PilotRun
from clinical_platform_tests.helpers import lineage, run_command
from spark_jobs.contracts.layout import Delivery

pytestmark = pytest.mark.slow

LB_ONLY = Delivery("CDISCPILOT01", "2024-02-01")
REPEATED = Delivery("CDISCPILOT01", "2024-03-01")
PILOT_SUBJECTS = 306


@dataclass
class Redeliveries:
    pilot: PilotRun
    lb_only: tuple[int, str, str]
    refused: tuple[int, str, str]
    allowed: tuple[int, str, str]
    repeated: tuple[int, str, str]
    dossier: str


def where(delivery: Delivery, lake: Path) -> list[str]:
    return ["--study", delivery.study, "--delivery", delivery.delivery, "--lake", str(lake)]


@pytest.fixture(scope="module")
def redeliveries(
    pilot_run: PilotRun, pilot_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    root = tmp_path_factory.mktemp("redeliveries")
    lab = root / "lab_update"
    lab.mkdir()
    for name in ("lbch.xpt", "lbhe.xpt"):
        shutil.copyfile(pilot_dir / name, lab / name)
    lake = pilot_run.lake
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        patch.setenv("CLINICAL_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
        patch.delenv("CLINICAL_ENV", raising=False)
        assert run_command(["land", str(lab), *where(LB_ONLY, lake)])[0] == 0
        lb_only = run_command(["materialize", *where(LB_ONLY, lake)])
        refused = run_command(["land", str(pilot_dir), *where(REPEATED, lake)])
        allowed = run_command(["land", str(pilot_dir), *where(REPEATED, lake), "--allow-duplicate"])
        repeated = run_command(["materialize", *where(REPEATED, lake), "--select", "raw_dm,raw_ae"])
        dossier = run_command(["dossier", *where(REPEATED, lake)])[1]
    yield Redeliveries(pilot_run, lb_only, refused, allowed, repeated, dossier)
    shutil.rmtree(root, ignore_errors=True)


def sql(lake: Path, query: str) -> list[str]:
    """Rows of `clinical-platform sql --format csv` (header first)."""
    code, out, err = run_command(["sql", query, "--format", "csv", "--lake", str(lake)])
    assert code == 0, err
    return out.strip().splitlines()


def test_a_partial_delivery_materializes_only_what_it_carries(redeliveries: Redeliveries) -> None:
    code, out, err = redeliveries.lb_only
    assert code == 0, err
    assert (
        "delivery CDISCPILOT01/2024-02-01 carries no AE, DM, DS, EX, SV, VS file: not materialized"
    ) in out
    statuses = {line.split()[0]: line.split()[-1] for line in out.splitlines()[2:-1]}
    assert statuses == {
        "raw_lb": "accepted",
        "curated_lb": "accepted",
        "features_subject_profile": "accepted",
    }, out
    lake = redeliveries.pilot.lake
    for domain in ("dm", "ae", "vs", "ex", "ds", "sv"):
        with pytest.raises(AssertionError, match="no lineage record"):
            lineage(lake, "raw", domain, LB_ONLY)


def test_features_use_the_study_current_data(redeliveries: Redeliveries) -> None:
    lake = redeliveries.pilot.lake
    profile = lineage(lake, "features", "subject_profile", LB_ONLY)
    assert profile["rows"]["out"] == PILOT_SUBJECTS
    read = {i["asset"]: i["partition"] for i in profile["inputs"]}
    assert read["curated_lb"] == LB_ONLY.key
    assert read["curated_dm"] == read["curated_vs"] == "CDISCPILOT01/2024-01-15"


def test_current_tables_never_double_count(redeliveries: Redeliveries) -> None:
    lake = redeliveries.pilot.lake
    first = lineage(lake, "curated", "lb", redeliveries.pilot.delivery)["rows"]["out"]
    lb = sql(
        lake,
        "select delivery, count(*) as n from curated.clinical_lb_current "
        "where study = 'CDISCPILOT01' group by delivery",
    )
    assert lb == ["delivery,n", f"2024-02-01,{first}"]
    # The current data's record is chained to the curated record it copied.
    current = lineage(lake, "curated", "lb_current", LB_ONLY)
    curated = lineage(lake, "curated", "lb", LB_ONLY)
    assert [i["record_sha256"] for i in current["inputs"]] == [curated["record_sha256"]]
    assert current["snapshot_id"] != curated["snapshot_id"]
    dm = sql(
        lake,
        "select delivery, count(*) as n, count(distinct USUBJID) as subjects "
        "from curated.clinical_dm_current where study = 'CDISCPILOT01' group by delivery",
    )
    assert dm == ["delivery,n,subjects", f"2024-01-15,{PILOT_SUBJECTS},{PILOT_SUBJECTS}"]


def test_the_same_files_again_are_refused_naming_the_first_delivery(
    redeliveries: Redeliveries,
) -> None:
    code, _, err = redeliveries.refused
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "clinical-platform: delivery CDISCPILOT01/2024-03-01 carries the same 10 files, byte for "
        "byte, as CDISCPILOT01/2024-01-15; not landed (land it anyway with --allow-duplicate)"
    )


def test_an_allowed_duplicate_has_equal_data_hashes(redeliveries: Redeliveries) -> None:
    assert redeliveries.allowed[0] == 0 and redeliveries.repeated[0] == 0
    lake = redeliveries.pilot.lake
    for domain in ("dm", "ae"):
        first = lineage(lake, "raw", domain, redeliveries.pilot.delivery)
        again = lineage(lake, "raw", domain, REPEATED)
        assert again["data_hash"] == first["data_hash"], domain
        assert again["content_hash"] != first["content_hash"], domain  # provenance differs
    assert "**Duplicate delivery**: the same files, byte for byte, as" in redeliveries.dossier
    assert (
        "- `raw.clinical_dm`: the same data as CDISCPILOT01/2024-01-15 (equal data hash"
    ) in redeliveries.dossier
