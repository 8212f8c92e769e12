"""Clinical SDTM assets: raw_<domain>, curated_<domain> and features_subject_profile.

Each stage is one subsettable multi-asset, so materializing several domains of a delivery
starts one Spark application, not one per domain; a run of several stages starts one for all of
them (`launchers.stages`), and with a single-run backfill policy a backfill of several
deliveries too. Keys, schemas, checks and dependencies come from the kernel
(`spark_jobs.contracts.outputs`); the Spark jobs do all the work, and these functions only say
which job to run on which partitions.
"""

import shlex
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace

import dagster as dg
from dagster._core.definitions.dependency import NodeHandle

from clinical_platform.clinical.checks import check_specs
from clinical_platform.lake import ClinicalLake, read_manifest
from clinical_platform.launchers.base import (
    DeliveryFailure,
    DeliveryResult,
    Reported,
    SecretUnavailable,
    SparkJob,
    SparkLauncher,
    SparkRun,
    with_metadata,
)
from clinical_platform.launchers.batch import StepEvent, stage_results
from clinical_platform.launchers.bundle import stage_code_version
from clinical_platform.launchers.stages import replay, split
from clinical_platform.lineage.dossier import write_dossier
from clinical_platform.lineage.openlineage import StepLineage
from clinical_platform.lineage.openlineage import configured as lineage_configured
from clinical_platform.partitions import deliveries_def, deliveries_of
from clinical_platform.pseudonymization import Pseudonymization
from spark_jobs.contracts import FAMILY_CONTRACTS
from spark_jobs.contracts.layout import (
    CLINICAL_FAMILY,
    Delivery,
    LakeLayout,
    PartitionKeyError,
    Zone,
)
from spark_jobs.contracts.outputs import DatasetOutput, family_outputs
from spark_jobs.contracts.protocol import STAGE_OF_ZONE, EntryPoint

OWNERS = ["team:clinical-data-engineering"]
KINDS = {"spark", "parquet"}


def column_schema(output: DatasetOutput) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(c.name, c.type, description=c.description or None)
            for c in output.columns
        ]
    )


# Per stage: a change to one job's code makes only its assets (and what reads them) stale,
# not every partition of the lake. Computed once (walking the imports takes ~0.2 s a stage).
STAGE_CODE_VERSIONS = {zone: stage_code_version(stage) for zone, stage in STAGE_OF_ZONE.items()}


def landing_key(family: str) -> dg.AssetKey:
    """The observable source of a family's landed deliveries (`landing_<family>`)."""
    return dg.AssetKey(f"{Zone.LANDING.value}_{family}")


def asset_spec(output: DatasetOutput) -> dg.AssetSpec:
    """The Dagster face of a declared output: key, group, schema, deps, owners, kinds."""
    tags = {"family": output.family, "zone": output.zone.value}
    if output.zone is not Zone.FEATURES:
        tags["domain"] = output.name.upper()
    return dg.AssetSpec(
        key=dg.AssetKey(output.asset_key),
        # Clinical assets are grouped by zone; another family's make one group of their own: a
        # group's "Materialize" then picks the partitions of one family (Dagster cannot choose
        # partitions for assets of several partitions definitions at once).
        group_name=output.zone.value if output.family == CLINICAL_FAMILY else output.family,
        description=output.description,
        # Raw starts at the delivered files: the landing source, versioned by its manifest.
        deps=[dg.AssetKey(key) for key in output.inputs]
        + ([landing_key(output.family)] if output.zone is Zone.RAW else []),
        kinds=KINDS,
        owners=OWNERS,
        tags=tags,
        code_version=STAGE_CODE_VERSIONS[output.zone],
        partitions_def=deliveries_def(output.family),
        metadata={"dagster/column_schema": column_schema(output)},
        skippable=True,
    )


def selected_datasets(
    keys: AbstractSet[dg.AssetKey | dg.AssetCheckKey], outputs: Sequence[DatasetOutput]
) -> list[str]:
    """Datasets whose assets or checks are among `keys`, in contract order."""
    assets = {k.asset_key if isinstance(k, dg.AssetCheckKey) else k for k in keys}
    return [o.name for o in outputs if dg.AssetKey(o.asset_key) in assets]


def checks_only(context: dg.AssetExecutionContext) -> bool:
    return not context.selected_asset_keys and bool(context.selected_asset_check_keys)


Batched = DeliveryResult | DeliveryFailure  # what a job run on several deliveries reports
NO_DELIVERY = (
    "this run has no delivery: choose a partition (STUDY/DELIVERY) to materialize or check; "
    "nothing was run or evaluated"
)
# Dagster 1.13's "Execute checks" on a partitioned asset launches a run without a partition.
CHECKS_WITHOUT_DELIVERY = (
    "Execute checks was launched without a delivery (Dagster 1.13 cannot pass one from the "
    "Checks tab): nothing was evaluated and no result recorded. To re-check a delivery's "
    "committed data, launch the checks job `clinical_checks` from Jobs with its partition, or "
    "run `clinical-platform materialize --study S --delivery D --checks-only`"
)


def has_delivery(context: dg.AssetExecutionContext) -> bool:
    return context.has_partition_key or context.has_partition_key_range


def landed_deliveries_of(context: dg.AssetExecutionContext, layout: LakeLayout) -> list[Delivery]:
    """The step's deliveries, refused in one line when a key is malformed (typed into the UI's
    "Add a partition"), the run has no partition, or a delivery was never landed."""
    if not has_delivery(context):
        raise dg.Failure(description=NO_DELIVERY, allow_retries=False)
    try:
        deliveries = deliveries_of(context)
    except PartitionKeyError as error:
        raise dg.Failure(description=f"not a delivery: {error}", allow_retries=False) from None
    missing = [d.key for d in deliveries if read_manifest(layout, d) is None]
    if missing:
        raise dg.Failure(
            description=f"{', '.join(missing)}: never landed in {layout.root} (no delivery "
            "manifest); land it with `clinical-platform land` or drop it into landing for the "
            "landing sensor",
            allow_retries=False,
        )
    return deliveries


def job_arguments(
    context: dg.AssetExecutionContext, layout: LakeLayout, deliveries: Sequence[Delivery]
) -> list[str]:
    """What every job is told: the lake (and the family, other than clinical), the
    deliveries, the run, and whether to write."""
    if len(deliveries) == 1:
        named = ["--study", deliveries[0].study, "--delivery", deliveries[0].delivery]
    else:
        named = ["--deliveries", ",".join(d.key for d in deliveries)]
    family = [] if layout.family == CLINICAL_FAMILY else ["--family", layout.family]
    arguments = ["--lake", layout.root, *family, *named, "--run-id", context.run.run_id]
    return [*arguments, "--checks-only"] if checks_only(context) else arguments


AssetOrCheck = dg.AssetKey | dg.AssetCheckKey


@dataclass(frozen=True)
class Stage:
    """One stage of the graph: its multi-asset (node), the job it runs, what it declares."""

    node: str
    entry_point: EntryPoint
    outputs: Sequence[DatasetOutput]
    family: str = CLINICAL_FAMILY

    def layout(self, lake: ClinicalLake) -> LakeLayout:
        return replace(lake.layout, family=self.family)

    def selected(self, context: dg.AssetExecutionContext) -> AbstractSet[AssetOrCheck]:
        """This stage's assets and checks that the run selects (whichever step asks)."""
        layer = context.job_def.asset_layer
        return layer.get_selected_entity_keys_for_node(NodeHandle(self.node, None))

    def job(
        self,
        keys: AbstractSet[AssetOrCheck],
        arguments: Sequence[str],
        pseudonymization: Pseudonymization,
        studies: AbstractSet[str] = frozenset(),
    ) -> SparkJob:
        """The stage's own job for the selected `keys`, given the run's common arguments."""
        if self.entry_point is not EntryPoint.FEATURES:
            datasets = ",".join(selected_datasets(keys, self.outputs))
            return SparkJob(self.entry_point, [*arguments, "--datasets", datasets])
        key_var = pseudonymization.key_env_for(studies)
        secrets: dict[str, str] = {}
        if "--checks-only" not in arguments:
            secrets[key_var] = pseudonymization.purpose()
        return SparkJob(self.entry_point, [*arguments, "--key-env", key_var], secrets)


def family_stages(family: str) -> tuple[Stage, ...]:
    """A family's stages in graph order: `<family>_raw`, `_curated`, `_features`, each running
    its zone's job on the family's declared outputs of that zone."""
    return tuple(
        Stage(f"{family}_{zone.value}", entry_point, family_outputs(family, zone), family)
        for zone, entry_point in STAGE_OF_ZONE.items()
    )


FAMILY_STAGES = {family: family_stages(family) for family in FAMILY_CONTRACTS}
RAW_STAGE, CURATED_STAGE, FEATURES_STAGE = STAGES = FAMILY_STAGES[CLINICAL_FAMILY]


def run_stage(
    context: dg.AssetExecutionContext,
    spark: SparkLauncher,
    lake: ClinicalLake,
    stage: Stage,
    pseudonymization: Pseudonymization,
) -> Iterator[StepEvent]:
    """Run the stage's job (or report what this run's earlier application did for it); then
    refresh each delivery's audit dossier, which every materialization names, whether the step
    succeeded or not (a step that replays leaves it to the step that ran the application).

    Checks launched without a delivery evaluate nothing and say why: failing the step would
    mark every check of a healthy asset failed.
    """
    if checks_only(context) and not has_delivery(context):
        context.log.warning(CHECKS_WITHOUT_DELIVERY)
        return
    layout = stage.layout(lake)
    deliveries = landed_deliveries_of(context, layout)
    events = open_lineage(context, lake, deliveries)
    if events is not None:
        send(context, events.start)
    run = replay(context, stage.entry_point)
    # A replayed stage's application ended before the first step refreshed the dossiers.
    refresh = run is None and not checks_only(context)
    if run is None:
        run = launch(context, spark, layout, stage, deliveries, pseudonymization)
    single = deliveries[0].key  # a one-delivery job's results name no partition
    if events is not None:
        done = committed(run, single)
        send(context, lambda: events.finish(done, run.failure))
    run.results = [
        with_metadata(r, dossier_metadata(layout, partition_of(r, single), r)) for r in run.results
    ]
    try:
        yield from stage_results(context, run)
    finally:
        if refresh:
            for delivery in deliveries:
                try:
                    write_dossier(layout, delivery)
                except Exception as error:  # noqa: BLE001 - a dossier never fails the data
                    context.log.warning(f"{delivery.key}: dossier not refreshed ({error})")


def partition_of(result: Reported, single: str) -> str:
    return result.partition if isinstance(result, Batched) else single


def dossier_metadata(layout: LakeLayout, partition: str, result: Reported) -> dict[str, str]:
    """Where the delivery's dossier is, and the command that prints this asset's."""
    delivery = Delivery.from_key(partition)
    metadata = {"dossier": layout.dossier(delivery)}
    found = result.result if isinstance(result, DeliveryResult) else result
    if isinstance(found, dg.MaterializeResult) and found.asset_key is not None:
        family = "" if layout.family == CLINICAL_FAMILY else f"--family {layout.family} "
        metadata["dossier_command"] = (
            f"clinical-platform dossier {family}--study {delivery.study} --delivery "
            f"{delivery.delivery} --asset {found.asset_key.to_user_string()} --format html "
            "--out dossier.html"
        )
    return metadata


def open_lineage(
    context: dg.AssetExecutionContext, lake: ClinicalLake, deliveries: Sequence[Delivery]
) -> StepLineage | None:
    """The step's OpenLineage runs, when OpenLineage is configured (and the step writes)."""
    if checks_only(context) or not lineage_configured():
        return None
    assets = [k.to_user_string() for k in context.selected_asset_keys]
    return StepLineage(context.run.run_id, lake.layout.root, assets, [d.key for d in deliveries])


def send(context: dg.AssetExecutionContext, emit: Callable[[], None]) -> None:
    """Send lineage events; one that cannot be sent is logged, never fails the step."""
    try:
        emit()
    except Exception as error:  # noqa: BLE001 - lineage export never fails the data
        context.log.warning(f"OpenLineage events not sent: {error}")


def committed(run: SparkRun, single: str) -> list[tuple[str, str]]:
    """(asset, delivery) of every partition the job committed (one delivery's name none)."""
    found: list[tuple[str, str]] = []
    for reported in run.results:
        result = reported.result if isinstance(reported, DeliveryResult) else reported
        if isinstance(result, dg.MaterializeResult) and result.asset_key is not None:
            found.append((result.asset_key.to_user_string(), partition_of(reported, single)))
    return found


def launch(
    context: dg.AssetExecutionContext,
    spark: SparkLauncher,
    layout: LakeLayout,
    stage: Stage,
    deliveries: Sequence[Delivery],
    pseudonymization: Pseudonymization,
) -> SparkRun:
    """This stage's job, and in the same application every later stage of the run whose step
    waits for this one (see `launchers.stages`)."""
    arguments = job_arguments(context, layout, deliveries)
    own = set(context.selected_asset_keys) | set(context.selected_asset_check_keys)
    studies = {d.study for d in deliveries}
    jobs = [stage.job(own, arguments, pseudonymization, studies)]
    chosen: list[AbstractSet[AssetOrCheck]] = [own]
    for later in [] if checks_only(context) else stages_after(context, stage):
        keys = later.selected(context)
        job = later.job(keys, arguments, pseudonymization, studies)
        try:
            spark.secret_environment(job)
        except SecretUnavailable:
            break  # that stage's own step runs it, and says what is missing
        jobs.append(job)
        chosen.append(keys)
    if len(jobs) == 1:
        return spark.run(context, jobs[0])
    checks = sorted(
        [key.asset_key.to_user_string(), key.name]
        for keys in chosen
        for key in keys
        if isinstance(key, dg.AssetCheckKey)
    )
    stages = [j.entry_point for j in jobs]
    context.log.info(f"Running stages {', '.join(stages)} in one Spark application")
    run = spark.run(context, pipeline_job(jobs, checks))
    return split(run, stage.entry_point, stages[1:], context.run.run_id)


def stages_after(context: dg.AssetExecutionContext, stage: Stage) -> list[Stage]:
    """The later stages this step can run for the run: only when it is the run's first stage,
    and only those whose steps wait for it (each selects an asset read from the stage before),
    so none starts before the application has reported for it."""
    stages = FAMILY_STAGES[stage.family]
    index = stages.index(stage)
    if any(earlier.selected(context) for earlier in stages[:index]):
        return []
    found: list[Stage] = []
    previous = {k for k in stage.selected(context) if isinstance(k, dg.AssetKey)}
    for later in stages[index + 1 :]:
        assets = {k for k in later.selected(context) if isinstance(k, dg.AssetKey)}
        reads = {
            dg.AssetKey(key)
            for o in later.outputs
            if dg.AssetKey(o.asset_key) in assets
            for key in o.inputs
        }
        if not reads & previous:
            break
        found.append(later)
        previous = assets
    return found


def pipeline_job(jobs: Sequence[SparkJob], checks: Sequence[Sequence[str]]) -> SparkJob:
    """Several stages' jobs as one application of the pipeline entry point."""
    arguments: list[str] = []
    secrets: dict[str, str] = {}
    for job in jobs:
        arguments += ["--stage", shlex.join([job.entry_point, *job.arguments])]
        secrets |= job.secrets
    return SparkJob(EntryPoint.PIPELINE, arguments, secrets, checks=checks)


def stage_asset(stage: Stage, doc: str) -> dg.AssetsDefinition:
    """A family's stage as a subsettable multi-asset on its deliveries (another family's)."""

    @dg.multi_asset(
        name=stage.node,
        specs=[asset_spec(o) for o in stage.outputs],
        check_specs=check_specs(stage.outputs),
        can_subset=True,
        partitions_def=deliveries_def(stage.family),
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=doc,
    )
    def step(
        context: dg.AssetExecutionContext,
        spark: SparkLauncher,
        lake: ClinicalLake,
        pseudonymization: Pseudonymization,
    ) -> Iterator[StepEvent]:
        yield from run_stage(context, spark, lake, stage, pseudonymization)

    return step


clinical_raw = stage_asset(
    RAW_STAGE,
    "landing -> raw for the selected domains of the deliveries, in one Spark application.",
)
clinical_curated = stage_asset(
    CURATED_STAGE, "raw -> curated + quarantine with every contract rule, in one Spark application."
)
clinical_features = stage_asset(
    FEATURES_STAGE, "curated -> features_subject_profile, pseudonymised with the study's HMAC key."
)

CLINICAL_ASSETS = [clinical_raw, clinical_curated, clinical_features]
