"""`clinical-platform` commands run in-process against a temporary instance and lake.

Nothing here starts Spark: every materialize call is one that must stop before running
(the end-to-end tests elsewhere run real materializations).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

# Imported before any test points CLINICAL_LAKE_URI at a temporary folder: `defs` reads the lake
# setting once, at import, and later tests in this process must not inherit a deleted tmp lake.
import clinical_platform.definitions  # noqa: F401
from clinical_platform.cli import main
from clinical_platform.generators.sdtm import generate_sdtm
from spark_jobs.contracts.layout import MANIFEST_NAME, Delivery, LakeLayout, local_path

STUDY = "SYNTH01"
DELIVERY = Delivery(STUDY, "2024-01-15")
STEMS = ("dm", "ae", "vs", "lbch", "lbhe", "ex", "ds", "sv")


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> Outcome:
    """Run the command as `clinical-platform ...` would, returning exit status and output."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    captured = capsys.readouterr()
    code = exited.value.code
    return Outcome(code if isinstance(code, int) else 1, captured.out, captured.err)


def assert_one_line_error(outcome: Outcome, *fragments: str) -> None:
    """Exit status 1 and exactly one `clinical-platform: ...` line naming every fragment."""
    assert outcome.code == 1, outcome
    assert len(outcome.err_lines) == 1, outcome.err
    line = outcome.err_lines[0]
    assert line.startswith("clinical-platform: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """DAGSTER_HOME and the lake in temporary folders (restored after the test)."""
    dagster_home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("CLINICAL_LAKE_URI", str(tmp_path / "lake"))
    monkeypatch.delenv("CLINICAL_ENV", raising=False)
    return dagster_home


@pytest.fixture(scope="module")
def delivery_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("delivery") / "SYNTH01_transfer"
    generate_sdtm(folder, 5, study=STUDY)
    return folder


def landing_dir(tmp_path: Path, delivery: Delivery = DELIVERY) -> Path:
    return Path(local_path(LakeLayout(str(tmp_path / "lake")).landing(delivery)))


def has_partition(key: str) -> bool:
    with dg.DagsterInstance.get() as instance:
        return instance.has_dynamic_partition("clinical_deliveries", key)


def land_args(folder: Path, delivery: Delivery = DELIVERY) -> list[str]:
    return ["land", str(folder), "--study", delivery.study, "--delivery", delivery.delivery]


# ---------------------------------------------------------------------------- generate


def test_generate_sdtm_writes_eight_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """generate sdtm writes the eight SDTM .xpt files and says so."""
    out = tmp_path / "generated"
    outcome = run_cli(["generate", "sdtm", "--subjects", "5", "--out", str(out)], capsys)
    assert (outcome.code, outcome.err) == (0, "")
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.xpt" for s in STEMS)
    assert outcome.out.splitlines()[-1] == f"8 SDTM files for 5 subjects of SYNTH01 in {out}"
    assert re.search(r"^  dm\.xpt +5 rows  ", outcome.out, re.MULTILINE)


def test_generate_zero_subjects_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Zero subjects is a user error: exit 1, one line, nothing written."""
    out = tmp_path / "none"
    outcome = run_cli(["generate", "sdtm", "--subjects", "0", "--out", str(out)], capsys)
    assert_one_line_error(outcome, "generate sdtm: subjects must be an integer >= 1, got 0")
    assert outcome.out == ""
    assert not out.exists()


# ---------------------------------------------------------------------------- land


def test_land_registers_the_partition_and_prints_hashes(
    home: Path, tmp_path: Path, delivery_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """land copies the files, prints each sha256 and registers the partition under DAGSTER_HOME."""
    outcome = run_cli(land_args(delivery_folder), capsys)
    assert (outcome.code, outcome.err) == (0, "")
    lines = outcome.out.splitlines()
    assert lines[0] == (f"{DELIVERY.key}: landed, 8 files -> file:{landing_dir(tmp_path)}")
    for stem in STEMS:
        path = delivery_folder / f"{stem}.xpt"
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        assert re.search(
            rf"^  {stem}\.xpt +{path.stat().st_size} bytes  sha256 {sha}$",
            outcome.out,
            re.MULTILINE,
        ), stem
    assert lines[-1] == f"partition {DELIVERY.key} registered in {home}"
    assert (landing_dir(tmp_path) / MANIFEST_NAME).is_file()
    assert (home / "dagster.yaml").is_file()
    assert has_partition(DELIVERY.key)
    assert not has_partition(f"{STUDY}/2024-01-16")


def test_landing_again_is_already_landed(
    home: Path, delivery_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Landing the same folder twice is a successful no-op."""
    assert run_cli(land_args(delivery_folder), capsys).code == 0
    again = run_cli(land_args(delivery_folder), capsys)
    assert (again.code, again.err) == (0, "")
    assert again.out.splitlines()[0].startswith(
        f"{DELIVERY.key}: already landed (same files), 8 files -> "
    )
    assert again.out.splitlines()[-1] == f"partition {DELIVERY.key} already registered in {home}"
    assert has_partition(DELIVERY.key)


def test_landing_different_files_is_one_line(
    home: Path, tmp_path: Path, delivery_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Different files under a landed delivery: exit 1, one line suggesting _2."""
    assert run_cli(land_args(delivery_folder), capsys).code == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "dm.xpt").write_bytes((delivery_folder / "dm.xpt").read_bytes())
    outcome = run_cli(land_args(other), capsys)
    assert_one_line_error(
        outcome,
        f"delivery {DELIVERY.key} is already landed with different files",
        f"land this one as {DELIVERY.key}_2",
    )


def test_landing_a_duplicate_is_one_line(
    home: Path, tmp_path: Path, delivery_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same files under a new delivery id: exit 1, one line naming the earlier delivery
    and the flag; nothing landed or registered."""
    later = Delivery(STUDY, "2024-02-01")
    assert run_cli(land_args(delivery_folder), capsys).code == 0
    outcome = run_cli(land_args(delivery_folder, later), capsys)
    assert_one_line_error(
        outcome,
        f"delivery {later.key} carries the same 8 files, byte for byte, as {DELIVERY.key}; "
        "not landed (land it anyway with --allow-duplicate)",
    )
    assert outcome.out == ""
    assert not landing_dir(tmp_path, later).exists()
    assert not has_partition(later.key)


def test_land_allow_duplicate_lands_and_says_so(
    home: Path, tmp_path: Path, delivery_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--allow-duplicate lands and registers the copy, prints what it duplicates and records
    it in the manifest; landing it again without the flag is the usual no-op."""
    later = Delivery(STUDY, "2024-02-01")
    assert run_cli(land_args(delivery_folder), capsys).code == 0
    outcome = run_cli([*land_args(delivery_folder, later), "--allow-duplicate"], capsys)
    assert (outcome.code, outcome.err) == (0, "")
    lines = outcome.out.splitlines()
    assert lines[0] == f"{later.key}: landed, 8 files -> file:{landing_dir(tmp_path, later)}"
    assert lines[1] == (
        f"{later.key}: duplicate of {DELIVERY.key} (the same files, byte for byte); "
        f"recorded as duplicate_of in its {MANIFEST_NAME}"
    )
    assert lines[-1] == f"partition {later.key} registered in {home}"
    manifest = json.loads((landing_dir(tmp_path, later) / MANIFEST_NAME).read_text())
    assert manifest["duplicate_of"] == DELIVERY.key
    assert has_partition(later.key)

    again = run_cli(land_args(delivery_folder, later), capsys)
    assert (again.code, again.err) == (0, "")
    assert again.out.splitlines()[0].startswith(f"{later.key}: already landed (same files), ")
    assert again.out.splitlines()[1].startswith(f"{later.key}: duplicate of {DELIVERY.key} ")


@pytest.mark.parametrize(
    ("study", "delivery", "message"),
    [
        (STUDY, "2024-02-30", "delivery '2024-02-30' is not a real calendar date"),
        (STUDY, "2024-13-01", "delivery '2024-13-01' is not a real calendar date"),
        (STUDY, "15.01.2024", "delivery '15.01.2024' is not a transfer date YYYY-MM-DD"),
        ("bad study", "2024-01-15", "study 'bad study' is not a valid study id"),
    ],
)
def test_land_bad_partition_is_one_line(
    home: Path,
    tmp_path: Path,
    delivery_folder: Path,
    capsys: pytest.CaptureFixture[str],
    study: str,
    delivery: str,
    message: str,
) -> None:
    """A bad delivery date or study id: exit 1, one line, nothing landed or registered."""
    outcome = run_cli(
        ["land", str(delivery_folder), "--study", study, "--delivery", delivery], capsys
    )
    assert_one_line_error(outcome, message)
    assert outcome.out == ""
    assert not (tmp_path / "lake").exists()
    assert not home.exists()  # nothing was registered either


# ---------------------------------------------------------------------------- materialize


def test_materialize_not_landed_is_one_line(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Materializing a delivery that is not landed stops before Dagster runs anything."""
    outcome = run_cli(["materialize", "--study", STUDY, "--delivery", "2024-01-16"], capsys)
    assert_one_line_error(
        outcome,
        f"delivery {STUDY}/2024-01-16 is not landed in file:{tmp_path / 'lake'}",
        "run clinical-platform land first",
    )
    assert outcome.out == ""


def test_materialize_unknown_selection_is_one_line(
    home: Path, delivery_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --select pattern matching nothing names the pattern and the assets; no run starts."""
    assert run_cli(land_args(delivery_folder), capsys).code == 0
    outcome = run_cli(
        [
            "materialize",
            "--study",
            STUDY,
            "--delivery",
            DELIVERY.delivery,
            "--select",
            "raw_dm,nomatch*",
        ],
        capsys,
    )
    assert_one_line_error(outcome, "--select 'nomatch*' matches no asset", "curated_dm")
    assert outcome.out == ""
    with dg.DagsterInstance.get() as instance:
        assert instance.get_runs() == []  # no run was started


def test_materialize_bad_delivery_is_one_line(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad delivery id for materialize is one line, like for land."""
    outcome = run_cli(["materialize", "--study", STUDY, "--delivery", "2024-02-30"], capsys)
    assert_one_line_error(outcome, "delivery '2024-02-30' is not a real calendar date")


def test_features_without_pseudonym_key_is_one_line(
    home: Path,
    delivery_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No key, no features: the run fails before Spark starts, naming the variable."""
    monkeypatch.delenv("CLINICAL_PSEUDONYM_KEY", raising=False)
    assert run_cli(land_args(delivery_folder), capsys).code == 0
    outcome = run_cli(
        [
            "materialize",
            "--study",
            STUDY,
            "--delivery",
            DELIVERY.delivery,
            "--select",
            "features_subject_profile",
        ],
        capsys,
    )
    assert outcome.code == 1
    assert outcome.err_lines[-1].startswith(
        "clinical-platform: materialize SYNTH01/2024-01-15 failed: step clinical_features: "
        "CLINICAL_PSEUDONYM_KEY is not set: feature tables are pseudonymised with a keyed HMAC"
    )
    assert outcome.err_lines[-1].endswith("; export CLINICAL_PSEUDONYM_KEY")
    # Dagster's events stay one line each on the console: no stack trace, no traceback.
    assert "Stack Trace" not in outcome.err and "Traceback" not in outcome.err
    assert any(
        "STEP_FAILURE" in line and "[details in the UI]" in line for line in outcome.err_lines
    ), outcome.err
    spark_logs = Path(str(home).replace("dagster_home", "lake")) / "_system" / "logs"
    assert not spark_logs.exists()  # no Spark application was started


# ---------------------------------------------------------------------------- dossier


def test_dossier_of_landed_delivery_prints_the_manifest(
    home: Path, tmp_path: Path, delivery_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before any materialization the dossier shows the landed manifest and empty tables."""
    assert run_cli(land_args(delivery_folder), capsys).code == 0
    outcome = run_cli(["dossier", "--study", STUDY, "--delivery", DELIVERY.delivery], capsys)
    assert (outcome.code, outcome.err) == (0, "")
    lines = outcome.out.splitlines()
    assert lines[0] == f"# Audit dossier — {DELIVERY.key}"
    assert f"Landing folder: `{landing_dir(tmp_path)}`" in lines
    header = lines.index("| file | bytes | sha256 |")
    rows = lines[header + 2 : header + 2 + len(STEMS)]
    assert rows == [
        f"| {name} | {(delivery_folder / name).stat().st_size} | "
        f"`{hashlib.sha256((delivery_folder / name).read_bytes()).hexdigest()}` |"
        for name in sorted(f"{s}.xpt" for s in STEMS)
    ]
    rejected = lines.index("## Rejected files")
    assert lines[rejected + 2] == "None."
    assets = lines.index("## Assets")
    assert lines[assets + 2].startswith("| asset | status |")
    assert lines[assets + 4 :] == []  # nothing materialized yet: an empty asset table


def test_dossier_written_to_a_file(
    home: Path, tmp_path: Path, delivery_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """dossier --out writes the same Markdown to a file (creating folders) and says where."""
    assert run_cli(land_args(delivery_folder), capsys).code == 0
    target = tmp_path / "reports" / "dossier.md"
    outcome = run_cli(
        ["dossier", "--study", STUDY, "--delivery", DELIVERY.delivery, "--out", str(target)], capsys
    )
    assert outcome.out == f"dossier of {DELIVERY.key} written to {target}\n"
    assert target.read_text().startswith(f"# Audit dossier — {DELIVERY.key}\n")
