"""Backfills without Spark: the real assets with a launcher that plays the jobs in a plain Python
process reporting through the jobs' own `JobReporter`, over a real Pipes session.

What it holds: one launch for every stage of a range of deliveries (`--deliveries`, run by the
real pipeline entry point), one
materialization per asset and delivery with that delivery's metadata, check results per
partition, a bad delivery failing alone, the one-delivery path unchanged, and the CLI's range
selection. `test_backfill.py` runs the real jobs on the CDISC pilot.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.definitions.temporal_context import TemporalContext
from dagster._time import get_current_datetime

from clinical_platform.clinical.assets import CLINICAL_ASSETS
from clinical_platform.clinical.landing import LANDING_KEY, landing_clinical
from clinical_platform.lake import ClinicalLake, land_delivery
from clinical_platform.launchers.base import (
    SparkJob,
    SparkLauncher,
    SparkRun,
    job_failure_reason,
    reported_results,
)
from clinical_platform.launchers.stages import STASH_ROOT, stash_path
from clinical_platform.pseudonymization import Pseudonymization
from clinical_platform.runs import (
    backfill_deliveries,
    deliveries_between,
    materialize_delivery,
    partition_ranges,
    select_assets,
)
from clinical_platform_tests.helpers import metadata_of, partition_materialization, run_command
from spark_jobs.contracts.layout import Delivery, LakeLayout, local_path
from spark_jobs.ingest import parse_args as ingest_arguments

STUDY = "S01"
GOOD = [Delivery(STUDY, "2024-01-15"), Delivery(STUDY, "2024-03-20")]
BAD = Delivery(STUDY, "2024-02-15")  # its dm.xpt is "truncated"
FILES = ("dm.xpt", "vs.xpt")
LAUNCHES: list[tuple[str, list[str]]] = []
FRESH = StaleStatus.FRESH

# The jobs' argument parsing, batching and reporting, with Spark's work replaced by a rule: a
# delivery holds as many rows as the day of its date; BAD's DM (or the launcher's `bad_dataset`)
# is rejected, so its curated domain is refused, and features fail when it is DM.
JOB = """
import sys
from functools import partial
from spark_jobs import pipeline
from spark_jobs.contracts.layout import Zone
from spark_jobs.contracts.outputs import FILES_READABLE, output
from spark_jobs.runtime.arguments import (
    add_datasets_argument, dataset_names, delivery_batch, delivery_parser,
)
from spark_jobs.runtime.reporting import CheckOutcome
from spark_jobs.runtime.session import JobError, for_each_delivery, run_job

entry, bad, bad_dataset, crash, extra = sys.argv[1:6]

def parse(entry, argv):
    parser = delivery_parser(entry, "A scripted job.")
    add_datasets_argument(parser)
    parser.add_argument("--key-env")
    ns = parser.parse_args(argv)
    ns.batch = delivery_batch(parser, ns)
    ns.job = ns.batch[0]  # the pipeline reads a stage's family from it, like the real args'
    ns.names = ("subject_profile",) if entry == "features" else dataset_names(parser, ns.datasets)
    ns.datasets = ns.names  # what the pipeline reads a stage's inputs from
    return ns

def report(entry, ns, reporter, key, name):
    zone = {"ingest": Zone.RAW, "curate": Zone.CURATED, "features": Zone.FEATURES}[entry]
    declared = output(zone, name)
    reads_bad = name == "subject_profile" and bad_dataset == "dm"
    broken = key == bad and (name == bad_dataset or reads_bad)
    if broken and entry == "features":
        raise JobError(f"{declared.asset_key} {key}: skipped: DM of {key} was rejected")
    reason = {"reason": f"{bad_dataset}.xpt: truncated"} if broken else {}
    readable = CheckOutcome(FILES_READABLE, not broken, blocking=broken, metadata=reason)
    if broken and entry == "curate":
        reporter.checks(declared.asset_key, [readable])
        return
    rows = 0 if broken else int(key[-2:]) + int(extra)
    metadata = {"status": "rejected" if broken else "accepted", "dagster/row_count": rows}
    if not ns.checks_only:  # re-evaluating checks writes and materializes nothing
        reporter.materialization(declared.asset_key, metadata, data_version=f"{key}:{rows}")
    others = [c.name for c in declared.checks if c.name != FILES_READABLE]
    checks = [readable] + [CheckOutcome(name, True, blocking=False) for name in others]
    reporter.checks(declared.asset_key, checks)

def body(entry, ns, reporter):
    if entry == crash:
        raise RuntimeError("the executor was lost")
    for_each_delivery(
        ns.batch,
        reporter,
        lambda job: [report(entry, ns, reporter, job.delivery.key, n) for n in ns.names],
    )

# The real pipeline entry point, its stages' work scripted as above.
pipeline.STAGES = {e: (partial(parse, e), partial(body, e)) for e in pipeline.STAGES}
if entry == "pipeline":
    stages = pipeline.parse_args(sys.argv[6:])
    run_job(entry, lambda reporter: pipeline.run_stages(stages, reporter))
else:
    ns = parse(entry, sys.argv[6:])
    run_job(entry, lambda reporter: body(entry, ns, reporter))
"""


def launched() -> list[tuple[str, list[str]]]:
    """Each stage launched, with its arguments; a pipeline's stages one by one."""
    found: list[tuple[str, list[str]]] = []
    for entry, arguments in LAUNCHES:
        if entry != "pipeline":
            found.append((entry, arguments))
            continue
        for text in arguments[1::2]:
            stage, *rest = shlex.split(text)
            found.append((stage, rest))
    return found


class ScriptedLauncher(SparkLauncher):
    """Runs `JOB` instead of spark-submit, through a real Pipes session."""

    bad_delivery: str = BAD.key
    bad_dataset: str = "dm"  # its file in the bad delivery is "truncated"
    extra_rows: int = 0  # more rows than the rule gives: different data, another data version
    crash_stage: str = "none"  # a stage whose work raises an unexpected error

    @property
    def description(self) -> str:
        return "scripted"

    def launch(
        self,
        context: dg.AssetExecutionContext,
        job: SparkJob,
        extras: Mapping[str, Any],
        env: Mapping[str, str],
    ) -> SparkRun:
        LAUNCHES.append((job.entry_point, list(job.arguments)))
        command = [sys.executable, "-c", JOB, job.entry_point, self.bad_delivery]
        command += [self.bad_dataset, self.crash_stage, str(self.extra_rows)]
        command += job.arguments
        with dg.open_pipes_session(
            context=context,
            context_injector=dg.PipesTempFileContextInjector(),
            message_reader=dg.PipesTempFileMessageReader(),
            extras=dict(extras),
        ) as session:
            done = subprocess.run(
                command,
                env={**env, **session.get_bootstrap_env_vars(), "PYTHONPATH": str(Path.cwd())},
                capture_output=True,
                text=True,
                check=False,
            )
        failure = job_failure_reason(done.stderr.splitlines()) if done.returncode else None
        return SparkRun(results=reported_results(session), failure=failure)


@pytest.fixture
def lake(tmp_path: Path) -> LakeLayout:
    """A lake with BAD and GOOD landed (two tiny files each) and one delivery of another study."""
    layout = LakeLayout(str(tmp_path / "lake"))
    for delivery in [*GOOD, BAD, Delivery("OTHER", "2024-02-01")]:
        folder = tmp_path / "deliveries" / delivery.key
        folder.mkdir(parents=True)
        for name in FILES:
            (folder / name).write_bytes(f"{delivery.key} {name}".encode())
        land_delivery(folder, delivery, layout)
    return layout


@pytest.fixture
def scripted(lake: LakeLayout, monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    monkeypatch.setenv("CLINICAL_PSEUDONYM_KEY", "test-key")
    LAUNCHES.clear()
    resources = {
        "spark": ScriptedLauncher(),
        "lake": ClinicalLake(uri=lake.root),
        "pseudonymization": Pseudonymization(),
    }
    # As in production: raw starts at the (partitioned) landing source.
    return dg.Definitions(assets=[landing_clinical, *CLINICAL_ASSETS], resources=resources)


def test_jobs_take_several_deliveries_oldest_first_or_one_as_before() -> None:
    lake = ["--lake", "/tmp/lake"]
    keys = f"{GOOD[1].key},{GOOD[0].key},{GOOD[1].key}"
    several = ingest_arguments([*lake, "--deliveries", keys, "--datasets", "vs"])
    assert [j.delivery for j in several.batch] == GOOD
    assert several.job == several.batch[0] and len({j.run_id for j in several.batch}) == 1
    one = ingest_arguments([*lake, "--study", STUDY, "--delivery", GOOD[0].delivery])
    assert one.batch == (one.job,) and one.job.delivery == GOOD[0]
    with pytest.raises(SystemExit):
        ingest_arguments([*lake, "--deliveries", keys, "--study", STUDY])


def test_partition_ranges_split_where_other_partitions_lie_between() -> None:
    registered = ["A/1", "S/1", "S/2", "A/2", "S/3", "S/4"]
    assert partition_ranges(registered, ["S/1", "S/2", "S/3", "S/4"]) == [
        ["S/1", "S/2"],
        ["S/3", "S/4"],
    ]
    assert partition_ranges(registered, ["S/2", "S/1"]) == [["S/1", "S/2"]]
    assert partition_ranges(registered, ["S/9"]) == []


def test_deliveries_between_takes_the_study_landed_in_range(lake: LakeLayout) -> None:
    assert deliveries_between(lake, STUDY, None, None) == [GOOD[0], BAD, GOOD[1]]
    assert deliveries_between(lake, STUDY, BAD, None) == [BAD, GOOD[1]]
    assert deliveries_between(lake, STUDY, None, Delivery(STUDY, "2024-02-20")) == [GOOD[0], BAD]


def test_backfill_runs_each_stage_once_and_records_each_delivery(
    lake: LakeLayout, scripted: dg.Definitions
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    deliveries = [GOOD[0], BAD, GOOD[1]]
    selection = select_assets(scripted, ["*_dm", "*_vs", "features_*"])
    outcome = backfill_deliveries(scripted, lake, deliveries, instance, selection)

    keys = ",".join(d.key for d in deliveries)
    assert [entry for entry, _ in LAUNCHES] == ["pipeline"]  # every stage in one application
    assert [(entry, arguments[2:4]) for entry, arguments in launched()] == [
        ("ingest", ["--deliveries", keys]),
        ("curate", ["--deliveries", keys]),
        ("features", ["--deliveries", keys]),
    ]
    assert len(outcome.runs) == 1 and not outcome.runs[0][1]
    assert [d.success for d in outcome.deliveries] == [True, False, True]
    bad_line = outcome.deliveries[1].line
    assert "dm.xpt: truncated" in bad_line
    assert bad_line == (
        f"{BAD.key}  failed     2/5 assets  dm.xpt: truncated (raw_dm rejected, "
        "curated_dm not committed, features_subject_profile not materialized)"
    )

    # Each delivery's own metadata, per partition, as the UI reads it.
    rows = [
        metadata_of(partition_materialization(instance, "curated_vs", d), "dagster/row_count")
        for d in deliveries
    ]
    assert rows == [15, 15, 20]
    assert metadata_of(partition_materialization(instance, "raw_dm", BAD), "status") == "rejected"
    assert (
        metadata_of(partition_materialization(instance, "curated_dm", BAD), "status")
        == "not committed"
    )
    assert "dm.xpt: truncated" in metadata_of(
        partition_materialization(instance, "curated_dm", BAD), "reason"
    )
    assert partition_materialization(instance, "features_subject_profile", BAD) is None
    for good in GOOD:
        assert (
            metadata_of(
                partition_materialization(instance, "features_subject_profile", good), "status"
            )
            == "accepted"
        )
    assert instance.get_materialized_partitions(dg.AssetKey("features_subject_profile")) == {
        d.key for d in GOOD
    }

    # Check results per partition: the bad delivery's curated DM failed, the others passed.
    check = dg.AssetCheckKey(dg.AssetKey("curated_dm"), "files_readable")
    history = instance.event_log_storage.get_asset_check_execution_history(check, limit=10)
    by_partition = {r.partition: r.status.value for r in history if r.partition}
    assert by_partition == {GOOD[0].key: "SUCCEEDED", BAD.key: "FAILED", GOOD[1].key: "SUCCEEDED"}


def test_a_delivery_of_another_study_in_between_splits_the_run(
    lake: LakeLayout, scripted: dg.Definitions
) -> None:
    """Each part is then one delivery, run exactly as `materialize` runs one."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(
        "clinical_deliveries", [GOOD[0].key, "OTHER/2024-02-01", GOOD[1].key]
    )
    selection = select_assets(scripted, ["*_vs"])
    outcome = backfill_deliveries(scripted, lake, GOOD, instance, selection)

    assert [ok for _, ok in outcome.runs] == [True, True]
    assert [d.line for d in outcome.deliveries] == [
        f"{GOOD[0].key}  succeeded  2/2 assets",
        f"{GOOD[1].key}  succeeded  2/2 assets",
    ]
    assert [entry for entry, _ in LAUNCHES] == ["pipeline", "pipeline"]
    assert [arguments[2:6] for _, arguments in launched()] == [
        ["--study", STUDY, "--delivery", GOOD[0].delivery],
        ["--study", STUDY, "--delivery", GOOD[0].delivery],
        ["--study", STUDY, "--delivery", GOOD[1].delivery],
        ["--study", STUDY, "--delivery", GOOD[1].delivery],
    ]
    assert (
        metadata_of(partition_materialization(instance, "curated_vs", GOOD[1]), "dagster/row_count")
        == 20
    )


def scripted_with(lake: LakeLayout, launcher: ScriptedLauncher) -> dg.Definitions:
    resources = {
        "spark": launcher,
        "lake": ClinicalLake(uri=lake.root),
        "pseudonymization": Pseudonymization(),
    }
    # As in production: raw starts at the (partitioned) landing source.
    return dg.Definitions(assets=[landing_clinical, *CLINICAL_ASSETS], resources=resources)


def step_failures(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Each failed step of the run and the first line of its error."""
    found: dict[str, str] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or not event.is_step_failure or event.step_key is None:
            continue
        error = event.step_failure_data.error if event.step_failure_data else None
        found[event.step_key] = (error.message if error else "").strip().splitlines()[0]
    return found


def skipped_steps(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        record.dagster_event.step_key
        for record in instance.all_logs(run_id)
        if record.dagster_event is not None
        and record.dagster_event.is_step_skipped
        and record.dagster_event.step_key is not None
    ]


def test_a_later_stage_that_fails_fails_its_own_step_only(
    lake: LakeLayout, scripted: dg.Definitions
) -> None:
    """One application ran every stage; curation crashed, so raw is materialized and its step
    succeeded, the curated step fails with curation's own reason, and features never ran."""
    defs = scripted_with(lake, ScriptedLauncher(crash_stage="curate"))
    instance = dg.DagsterInstance.ephemeral()
    selection = select_assets(defs, ["*_vs", "features_*"])
    outcome = materialize_delivery(defs, GOOD[0], instance, selection)

    assert [entry for entry, _ in LAUNCHES] == ["pipeline"]
    assert not outcome.success
    assert outcome.rows == {"raw_vs": 15}
    assert step_failures(instance, outcome.run_id) == {
        "clinical_curated": "dagster._core.definitions.events.Failure: "
        "curate failed unexpectedly: RuntimeError: the executor was lost"
    }
    assert outcome.problems == [
        "step clinical_curated: curate failed unexpectedly: RuntimeError: the executor was lost",
        "features_subject_profile skipped: an upstream step failed",
    ]
    kept = stash_path(outcome.run_id, "features")
    assert kept.exists()  # its step never came to read it: pruned a day later
    assert "features: not run: curate failed" in kept.read_text()


def test_a_failing_blocking_check_stops_only_the_assets_that_read_it(
    lake: LakeLayout, scripted: dg.Definitions
) -> None:
    """BAD's DM is refused by curation's blocking check: the application does not featurize it,
    the curated step goes on (it has nothing else here), and Dagster skips features, which
    reads DM. The delivery is reported failed, with the refusal as the reason."""
    instance = dg.DagsterInstance.ephemeral()
    selection = select_assets(scripted, ["*_dm", "features_*"])
    outcome = materialize_delivery(scripted, BAD, instance, selection)

    assert [entry for entry, _ in LAUNCHES] == ["pipeline"]
    assert not outcome.success
    assert outcome.statuses == {"raw_dm": "rejected"}
    assert outcome.checks["curated_dm:files_readable"] is False
    assert step_failures(instance, outcome.run_id) == {}
    assert skipped_steps(instance, outcome.run_id) == ["clinical_features"]
    assert outcome.problems[-1] == (
        "features_subject_profile skipped: DM of S01/2024-02-15 was rejected (dm.xpt: truncated)"
    )
    kept = stash_path(outcome.run_id, "features").read_text()
    assert "not run: blocking check curated_dm files_readable failed" in kept
    assert stash_path(outcome.run_id, "curate").parent.parent == STASH_ROOT
    assert not stash_path(outcome.run_id, "curate").exists()  # read and removed by its step


def test_a_refused_domain_that_features_do_not_read_stops_nothing_else(
    tmp_path: Path, lake: LakeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivery whose SV is refused: curated DM and VS commit, features (which read DM and VS,
    not SV) commit in the same application, and only curated SV is missing, with its failed
    blocking check recorded for that delivery."""
    monkeypatch.setenv("CLINICAL_PSEUDONYM_KEY", "test-key")
    LAUNCHES.clear()
    delivery = Delivery(STUDY, "2024-04-10")
    folder = tmp_path / "sv_delivery"
    folder.mkdir()
    for name in (*FILES, "sv.xpt"):
        (folder / name).write_bytes(f"{delivery.key} {name}".encode())
    land_delivery(folder, delivery, lake)
    defs = scripted_with(lake, ScriptedLauncher(bad_delivery=delivery.key, bad_dataset="sv"))
    instance = dg.DagsterInstance.ephemeral()
    selection = select_assets(defs, ["*_dm", "*_vs", "*_sv", "features_*"])
    outcome = materialize_delivery(defs, delivery, instance, selection)

    assert [entry for entry, _ in LAUNCHES] == ["pipeline"]
    assert not outcome.success  # the delivery is not whole
    assert outcome.rows == {
        "raw_dm": 10,
        "raw_vs": 10,
        "raw_sv": 0,
        "curated_dm": 10,
        "curated_vs": 10,
        "features_subject_profile": 10,
    }
    assert outcome.statuses["raw_sv"] == "rejected"
    assert outcome.checks["curated_sv:files_readable"] is False
    assert step_failures(instance, outcome.run_id) == {}
    assert skipped_steps(instance, outcome.run_id) == []
    assert outcome.problems == [
        "raw_sv check files_readable failed: sv.xpt: truncated",
        "curated_sv check files_readable failed: sv.xpt: truncated",
    ]
    # The refusal stays visible on the delivery's partition, as a failed blocking check.
    [evaluation] = [
        e
        for record in instance.all_logs(outcome.run_id)
        if record.dagster_event is not None
        and isinstance(e := record.dagster_event.event_specific_data, dg.AssetCheckEvaluation)
        and e.asset_check_key == dg.AssetCheckKey(dg.AssetKey("curated_sv"), "files_readable")
    ]
    assert evaluation.partition == delivery.key
    assert not evaluation.passed and evaluation.blocking


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["--from", "2024-03-01", "--to", "2024-01-01"], "--to 2024-01-01 is before --from"),
        (["--from", "2024-13-01"], "not a real calendar date"),
        (["--from", "2025-01-01"], f"no delivery of {STUDY} from 2025-01-01 to the last"),
        (["--select", "nothing_*"], "--select 'nothing_*' matches no asset"),
    ],
)
def test_backfill_refusals_are_one_line(
    lake: LakeLayout,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    arguments: list[str],
    fragment: str,
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    code, out, err = run_command(["backfill", "--study", STUDY, "--lake", lake.root, *arguments])
    assert code == 1 and not out, (out, err)
    assert err.startswith("clinical-platform: ") and err.count("\n") == 1, err
    assert fragment in err, err


STALE_KEYS = ["raw_dm", "curated_dm", "features_subject_profile"]


def stale_partitions(defs: dg.Definitions, instance: dg.DagsterInstance) -> dict[str, list[str]]:
    """Per GOOD delivery, the assets the UI shows stale (not FRESH) for it."""
    graph = defs.resolve_asset_graph()
    # As the webserver's workspace context builds it for the `staleStatus` field.
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance, asset_graph=graph, loading_context=view)
    return {
        d.key: [k for k in STALE_KEYS if resolver.get_status(dg.AssetKey(k), d.key) != FRESH]
        for d in GOOD
    }


def test_a_replaced_landing_file_makes_only_its_delivery_raw_partition_stale(
    lake: LakeLayout, scripted: dg.Definitions
) -> None:
    """Raw steps log the landing source's data version (the manifest's sha256) before they
    run. Observing the source later (the UI's "Observe") changes nothing while the landing is
    as ingested; once a landed file of GOOD[0] is replaced (its manifest rewritten), exactly
    that delivery's raw partition is stale."""
    instance = dg.DagsterInstance.ephemeral()
    for delivery in GOOD:
        selection = select_assets(scripted, ["*_dm", "features_*"])
        assert materialize_delivery(scripted, delivery, instance, selection).success
    observing = dg.Definitions(
        assets=[landing_clinical, *CLINICAL_ASSETS],
        jobs=[dg.define_asset_job("observe_landing", selection=[LANDING_KEY])],
        resources=scripted.resources,
    )

    def observe() -> None:
        job = observing.resolve_job_def("observe_landing")
        assert job.execute_in_process(instance=instance).success

    assert stale_partitions(observing, instance) == {GOOD[0].key: [], GOOD[1].key: []}
    observe()
    assert stale_partitions(observing, instance) == {GOOD[0].key: [], GOOD[1].key: []}

    manifest = Path(local_path(lake.manifest(GOOD[0])))
    landed = json.loads(manifest.read_text())
    replaced = b"a corrected dm.xpt"
    (manifest.parent / "dm.xpt").write_bytes(replaced)
    for entry in landed["files"]:
        if entry["name"] == "dm.xpt":
            entry |= {"size": len(replaced), "sha256": hashlib.sha256(replaced).hexdigest()}
    manifest.write_text(json.dumps(landed, indent=2))
    observe()
    assert stale_partitions(observing, instance) == {GOOD[0].key: ["raw_dm"], GOOD[1].key: []}


def test_the_ui_shows_stale_exactly_what_lies_downstream_of_a_change(
    lake: LakeLayout, scripted: dg.Definitions
) -> None:
    """Through the resolver behind the UI's staleness (the GraphQL `staleStatus` field): a
    change to the features job's code makes only the feature partitions stale; new data in
    one delivery's raw DM makes only that delivery's downstream partitions stale, hop by hop."""
    instance = dg.DagsterInstance.ephemeral()
    for delivery in GOOD:
        selection = select_assets(scripted, ["*_dm", "features_*"])
        assert materialize_delivery(scripted, delivery, instance, selection).success

    def stale(defs: dg.Definitions) -> dict[str, list[str]]:
        return stale_partitions(defs, instance)

    assert stale(scripted) == {GOOD[0].key: [], GOOD[1].key: []}
    # Each stage's code version is its own job's modules: this is what editing features.py does.
    edited = dg.map_asset_specs(
        lambda spec: (
            spec.replace_attributes(code_version="edited")
            if spec.key == dg.AssetKey("features_subject_profile")
            else spec
        ),
        CLINICAL_ASSETS,
    )
    with_edit = dg.Definitions(assets=[landing_clinical, *edited], resources=scripted.resources)
    only_features = ["features_subject_profile"]
    assert stale(with_edit) == {GOOD[0].key: only_features, GOOD[1].key: only_features}
    # Editing curate.py marks curated (raw stays fresh). The features turn stale only once
    # curated is rebuilt with a new data version (its content hash), as below for new data:
    # a code change that leaves the data as it was makes nothing downstream stale.
    edited = dg.map_asset_specs(
        lambda spec: (
            spec.replace_attributes(code_version="edited")
            if spec.key.to_user_string().startswith("curated_")
            else spec
        ),
        CLINICAL_ASSETS,
    )
    with_edit = dg.Definitions(assets=[landing_clinical, *edited], resources=scripted.resources)
    assert stale(with_edit) == {GOOD[0].key: ["curated_dm"], GOOD[1].key: ["curated_dm"]}

    # GOOD[0]'s DM is ingested again and comes out different (a corrected landing file).
    changed = scripted_with(lake, ScriptedLauncher(extra_rows=5))
    outcome = materialize_delivery(changed, GOOD[0], instance, [dg.AssetKey("raw_dm")])
    assert outcome.rows == {"raw_dm": int(GOOD[0].delivery[-2:]) + 5}
    # Dagster marks the partition that read the old data; once it is rebuilt, the next one.
    assert stale(scripted) == {GOOD[0].key: ["curated_dm"], GOOD[1].key: []}
    materialize_delivery(changed, GOOD[0], instance, [dg.AssetKey("curated_dm")])
    assert stale(scripted) == {GOOD[0].key: ["features_subject_profile"], GOOD[1].key: []}


def test_openlineage_gets_a_start_and_an_end_per_asset_and_delivery(
    lake: LakeLayout, scripted: dg.Definitions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a file transport configured, each asset and delivery of a step is one OpenLineage
    run: START, then COMPLETE with the table, its schema and column lineage, or FAIL with
    why. A step Dagster skipped (BAD's features) sends nothing."""
    events_file = tmp_path / "openlineage.jsonl"
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(events_file))
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")
    instance = dg.DagsterInstance.ephemeral()
    selection = select_assets(scripted, ["*_dm", "features_*"])
    for delivery in (GOOD[0], BAD):
        materialize_delivery(scripted, delivery, instance, selection)

    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    runs: dict[str, list[str]] = {}
    for event in events:
        runs.setdefault(event["job"]["name"], []).append(event["eventType"])
        assert event["job"]["namespace"] == "clinical-platform"
    good, bad = GOOD[0].key, BAD.key
    assert runs == {
        f"raw_dm/{good}": ["START", "COMPLETE"],
        f"curated_dm/{good}": ["START", "COMPLETE"],
        f"features_subject_profile/{good}": ["START", "COMPLETE"],
        f"raw_dm/{bad}": ["START", "COMPLETE"],  # committed, empty, as rejected
        f"curated_dm/{bad}": ["START", "FAIL"],
    }
    assert len({e["run"]["runId"] for e in events}) == len(runs)
    [profile] = [
        e
        for e in events
        if e["job"]["name"].startswith("features") and e["eventType"] == "COMPLETE"
    ]
    [output] = profile["outputs"]
    assert (output["namespace"], output["name"]) == (lake.root, "features.clinical_subject_profile")
    sources = output["facets"]["columnLineage"]["fields"]["sysbp_change"]["inputFields"]
    assert sorted(f["field"] for f in sources) == ["VISITNUM", "VSBLFL", "VSSTRESN", "VSTESTCD"]
    assert {f["name"] for f in sources} == {"curated.clinical_vs"}
    assert "curated.clinical_dm" in [i["name"] for i in profile["inputs"]]
    [failed] = [e for e in events if e["eventType"] == "FAIL"]
    assert "did not commit" in failed["run"]["facets"]["errorMessage"]["message"]
