"""Level 5: the definitions snapshot — asset graph, partitions and checks load offline."""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from clinical_platform.definitions import build_definitions, resources_for
from clinical_platform.launchers.emr_serverless import EmrServerlessLauncher
from clinical_platform.settings import SettingsError
from clinical_platform_tests.conftest import PROJECT_ROOT
from spark_jobs.contracts import SDTM_CONTRACTS, SUBJECT_PROFILE

DOMAINS = [c.name for c in SDTM_CONTRACTS]
defs = build_definitions("local", "/tmp/clinical-definitions-test-lake")


def test_asset_graph_has_raw_curated_and_features_per_zone() -> None:
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    for family in ("clinical", "sensor", "omics"):
        landing = specs.pop(f"landing_{family}")
        assert landing.group_name == "landing"
        assert isinstance(landing.partitions_def, dg.DynamicPartitionsDefinition)
        assert landing.partitions_def.name == f"{family}_deliveries"
    assert sorted(specs) == sorted(
        [
            *[f"raw_{d}" for d in DOMAINS],
            *[f"curated_{d}" for d in DOMAINS],
            "features_subject_profile",
            "raw_sensor",
            "curated_sensor",
            "features_sensor_daily",
            *[f"{zone}_{d}" for zone in ("raw", "curated") for d in ("counts", "samples")],
            "features_omics_top_genes",
        ]
    )
    omics = {"raw_counts", "raw_samples", "curated_counts", "curated_samples"}
    for name, spec in specs.items():
        family = "sensor" if "sensor" in name else "clinical"
        family = "omics" if name in omics or "omics" in name else family
        group = name.split("_", 1)[0] if family == "clinical" else family
        assert spec.group_name == group, name
        assert spec.kinds == {"spark", "parquet"}
        assert spec.description and len(spec.description) > 40
        assert spec.code_version and len(spec.code_version) == 12
        assert isinstance(spec.partitions_def, dg.DynamicPartitionsDefinition)
        assert spec.partitions_def.name == f"{family}_deliveries"
        assert spec.tags["family"] == family
        assert spec.owners == ["team:clinical-data-engineering"]
        assert isinstance(spec.metadata["dagster/column_schema"], dg.TableSchema)


def test_lineage_edges_follow_the_zones() -> None:
    graph = defs.resolve_asset_graph()
    parents = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
        for k in graph.get_all_asset_keys()
    }
    assert parents["curated_ae"] == {"raw_ae", "raw_dm"}
    assert parents["curated_dm"] == {"raw_dm"}
    assert parents["raw_dm"] == {"landing_clinical"}
    assert parents["features_subject_profile"] == {f"curated_{d}" for d in SUBJECT_PROFILE.upstream}
    assert parents["raw_sensor"] == {"landing_sensor"}
    assert parents["curated_sensor"] == {"raw_sensor"}
    assert parents["features_sensor_daily"] == {"curated_sensor"}
    assert parents["curated_counts"] == {"raw_counts"}
    assert parents["features_omics_top_genes"] == {"curated_counts", "curated_samples"}


def test_checks_come_from_the_contracts() -> None:
    graph = defs.resolve_asset_graph()
    keys = graph.asset_check_keys
    for contract in SDTM_CONTRACTS:
        curated = {k.name for k in keys if k.asset_key == dg.AssetKey(f"curated_{contract.name}")}
        assert curated == {r.name for r in contract.rules}
        for rule in contract.rules:
            check = graph.get_check_spec(
                dg.AssetCheckKey(dg.AssetKey(f"curated_{contract.name}"), rule.name)
            )
            assert check.blocking is rule.blocking, (contract.name, rule.name)
    blocking = {
        k.name
        for k in keys
        if graph.get_check_spec(k).blocking and k.asset_key == dg.AssetKey("curated_vs")
    }
    assert blocking == {"files_readable", "required_columns", "reconciliation"}
    features = {k.name for k in keys if k.asset_key == dg.AssetKey("features_subject_profile")}
    assert features == {"no_identifiers", "one_row_per_subject"}


def test_loading_definitions_starts_no_spark_and_touches_no_network() -> None:
    probe = (
        "import socket, sys\n"
        "def refuse(*a, **k):\n"
        "    raise AssertionError('network access while loading definitions')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from clinical_platform.definitions import defs\n"
        "built = defs()\n"
        "built.resolve_asset_graph(); built.resolve_implicit_global_asset_job_def()\n"
        "assert not [m for m in sys.modules if m.startswith('pyspark')], 'pyspark imported'\n"
        "print('ok')\n"
    )
    env = {**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


def test_dagster_validates_the_workspace(tmp_path) -> None:
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    done = subprocess.run(
        [dagster, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert "Validation successful" in done.stdout + done.stderr


# Records the settings our own code reads (libraries copy the whole environment at import).
ENV_PROBE = """
import json, os, sys
read = []
get_item = type(os.environ).__getitem__
OURS = ("/clinical_platform/", "/spark_jobs/")
PASSING = ("/os.py", "<frozen os>", "_collections_abc.py", "<frozen _collections_abc>")
def recording(self, key):
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.endswith(PASSING):
        frame = frame.f_back
    if frame is not None and any(p in frame.f_code.co_filename for p in OURS):
        read.append(key)
    return get_item(self, key)
type(os.environ).__getitem__ = recording
import clinical_platform.definitions as module
at_import = [k for k in read if k.startswith(("CLINICAL_", "AWS_"))]
built = module.defs()
at_build = [k for k in read if k.startswith(("CLINICAL_", "AWS_"))]
print(json.dumps({"import": at_import, "build": at_build,
                  "launcher": type(built.resources["spark"]).__name__}))
"""


def run_env_probe(**env: str) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLINICAL_", "AWS_"))}
    done = subprocess.run(
        [sys.executable, "-c", ENV_PROBE],
        cwd=PROJECT_ROOT,
        env={**clean, "DAGSTER_DISABLE_TELEMETRY": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_definitions_reads_no_setting_until_they_are_built() -> None:
    found = run_env_probe(CLINICAL_ENV="local")
    assert found["import"] == []
    assert "CLINICAL_ENV" in found["build"]  # the probe does see reads: building reads the switch
    assert found["launcher"] == "LocalSparkLauncher"


@pytest.mark.parametrize(
    ("environment", "launcher"),
    [
        ("aws-emr-serverless", "EmrServerlessLauncher"),
        ("aws-emr-steps", "EmrStepLauncher"),
        ("aws", "EmrStepLauncher"),
    ],
)
def test_clinical_env_chooses_the_launcher(environment: str, launcher: str) -> None:
    found = run_env_probe(CLINICAL_ENV=environment)
    assert found["import"] == []
    assert found["launcher"] == launcher


def test_serverless_resources_resolve_from_the_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every id of the Serverless deployment is an EnvVar, resolved when a run starts."""
    monkeypatch.setenv("CLINICAL_EMR_SERVERLESS_APPLICATION_ID", "00fabc")
    monkeypatch.setenv("CLINICAL_EMR_SERVERLESS_EXECUTION_ROLE_ARN", "arn:aws:iam::1:role/job")
    monkeypatch.setenv("CLINICAL_EMR_STAGING_URI", "s3://staging/clinical")
    monkeypatch.setenv("CLINICAL_LAKE_URI", "s3://lake/clinical")
    monkeypatch.setenv("CLINICAL_PSEUDONYM_KEY_SECRET_ID", "clinical/pseudonym-key")
    resources = resources_for("aws-emr-serverless")
    configured = resources["spark"]
    assert isinstance(configured, EmrServerlessLauncher)
    assert configured.application_id == dg.EnvVar("CLINICAL_EMR_SERVERLESS_APPLICATION_ID")
    launcher = configured.process_config_and_initialize()
    assert (launcher.application_id, launcher.staging_uri) == ("00fabc", "s3://staging/clinical")
    assert launcher.secret_ids == {"CLINICAL_PSEUDONYM_KEY": "clinical/pseudonym-key"}
    assert launcher.log_uri is None
    lake = resources["lake"].process_config_and_initialize()
    assert lake.uri == "s3://lake/clinical"


def test_unknown_environment_is_one_line() -> None:
    with pytest.raises(SettingsError, match="CLINICAL_ENV='gcp' is not one of local, aws-emr-"):
        build_definitions("gcp")


# ---------------------------------------------------------------------------- snapshot

SNAPSHOT = Path(__file__).parent / "__snapshots__" / "definitions.json"
UPDATE_VAR = "UPDATE_SNAPSHOTS"


def backfill_policy(graph: Any, key: dg.AssetKey) -> str | None:
    """How a backfill runs the asset: `single_run` is one Spark application for the range."""
    policy = graph.get(key).backfill_policy
    return None if policy is None else policy.policy_type.value.lower()


def definitions_snapshot(definitions: dg.Definitions) -> dict[str, object]:
    """What a reviewer must see change: keys, checks, partitions, schemas, deps, kinds, tags.

    The code version is left out: it changes with every edit of spark_jobs by design.
    """
    graph = definitions.resolve_asset_graph()
    assets: dict[str, object] = {}
    for spec in sorted(definitions.resolve_all_asset_specs(), key=lambda s: s.key.to_user_string()):
        key = spec.key
        schema = spec.metadata.get("dagster/column_schema")
        partitions = spec.partitions_def
        assets[key.to_user_string()] = {
            "group": spec.group_name,
            "kinds": sorted(spec.kinds),
            "owners": list(spec.owners),
            "tags": dict(sorted(spec.tags.items())),
            "partitions": getattr(partitions, "name", None),
            "backfill": backfill_policy(graph, key),
            "deps": sorted(d.asset_key.to_user_string() for d in spec.deps),
            "columns": [f"{c.name} {c.type}" for c in schema.columns] if schema else [],
            "checks": [
                f"{k.name}{' (blocking)' if graph.get_check_spec(k).blocking else ''}"
                for k in sorted(graph.asset_check_keys, key=lambda k: str(k))
                if k.asset_key == key
            ],
        }
    return {
        "assets": assets,
        "sensors": sorted(s.name for s in definitions.sensors or []),
        "schedules": sorted(s.name for s in definitions.schedules or []),
        "jobs": sorted(getattr(j, "name", "") for j in definitions.jobs or []),
    }


def test_definitions_match_the_stored_snapshot() -> None:
    """A change to assets, checks, schemas or deps shows here as a readable diff.

    After an intended change: `make snapshot` (UPDATE_SNAPSHOTS=1 for this test) and commit it.
    """
    current = json.dumps(definitions_snapshot(defs), indent=2, sort_keys=False) + "\n"
    if os.environ.get(UPDATE_VAR):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(current)
    stored = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    if current != stored:
        diff = "".join(
            difflib.unified_diff(
                stored.splitlines(keepends=True),
                current.splitlines(keepends=True),
                fromfile=str(SNAPSHOT.relative_to(PROJECT_ROOT)),
                tofile="definitions as built now",
            )
        )
        pytest.fail(f"definitions differ from the snapshot (update: make snapshot):\n{diff}")


def test_snapshot_diff_names_what_changed() -> None:
    """The comparison can fail: dropping a column from a declared schema shows in the diff."""
    snapshot = definitions_snapshot(defs)
    changed = json.loads(json.dumps(snapshot))
    changed["assets"]["curated_vs"]["columns"].remove("_flag_details array<string>")
    diff = list(
        difflib.unified_diff(
            json.dumps(snapshot, indent=2).splitlines(), json.dumps(changed, indent=2).splitlines()
        )
    )
    assert '-        "_flag_details array<string>",' in diff
