"""Level 5: the definitions snapshot — asset graph, partitions and checks load offline."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg

from clinical_platform.definitions import defs
from clinical_platform_tests.conftest import PROJECT_ROOT
from spark_jobs.contracts import SDTM_CONTRACTS, SUBJECT_PROFILE

DOMAINS = [c.name for c in SDTM_CONTRACTS]


def test_asset_graph_has_raw_curated_and_features_per_zone() -> None:
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    assert sorted(specs) == sorted(
        [
            *[f"raw_{d}" for d in DOMAINS],
            *[f"curated_{d}" for d in DOMAINS],
            "features_subject_profile",
        ]
    )
    for name, spec in specs.items():
        assert spec.group_name == name.split("_", 1)[0], name
        assert spec.kinds == {"spark", "parquet"}
        assert spec.description and len(spec.description) > 40
        assert spec.code_version and len(spec.code_version) == 12
        assert isinstance(spec.partitions_def, dg.DynamicPartitionsDefinition)
        assert spec.partitions_def.name == "clinical_deliveries"
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
    assert parents["features_subject_profile"] == {f"curated_{d}" for d in SUBJECT_PROFILE.upstream}


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
        "defs.resolve_asset_graph(); defs.resolve_implicit_global_asset_job_def()\n"
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
