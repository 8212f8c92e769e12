"""Materializing deliveries in-process, as `clinical-platform materialize`, `backfill` and the
demo do.

Runs go into the same Dagster instance as `make ui` (DAGSTER_HOME), so everything done from
the command line shows up in the UI's run history and asset catalog.
"""

from __future__ import annotations

import fnmatch
import logging
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import dagster as dg

from clinical_platform import settings
from clinical_platform.clinical.checks import checks_job, checks_job_name
from clinical_platform.clinical.landing import observe_landed
from clinical_platform.lake import ClinicalLake, landed_deliveries, read_manifest
from clinical_platform.launchers.base import ENTRY_TAG
from clinical_platform.partitions import deliveries_def
from spark_jobs.contracts import RuleKind, carried_datasets
from spark_jobs.contracts.layout import CLINICAL_FAMILY, Delivery, LakeLayout, Zone
from spark_jobs.contracts.outputs import (
    FILES_READABLE,
    asset_outputs,
    every_asset_output,
)

# Curated checks that refuse a whole dataset of a delivery, before any row is read.
GATE_CHECKS = (RuleKind.FILES_READABLE.value, RuleKind.REQUIRED_COLUMNS.value)
# Every family's, to explain a run's outcome whatever family it ran.
_ALL_ASSETS = every_asset_output()
_RAW_KEYS = frozenset(o.asset_key for o in _ALL_ASSETS if o.zone is Zone.RAW)
_FEATURES = [o for o in _ALL_ASSETS if o.zone is Zone.FEATURES]
_FEATURE_KEYS = tuple(o.asset_key for o in _FEATURES)
_FEATURE_INPUTS = {o.asset_key: frozenset(o.inputs) for o in _FEATURES}
_CURATED_BY_KEY = {o.asset_key: o for o in _ALL_ASSETS if o.zone is Zone.CURATED}

DAGSTER_YAML = """\
# Written by clinical-platform for local use: SQLite storage under this folder.
telemetry:
  enabled: false
"""


class SelectionError(ValueError):
    """A --select pattern that matches no asset."""


def local_instance() -> dg.DagsterInstance:
    """The persistent instance under DAGSTER_HOME (default ./.dagster), created if missing."""
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return dg.DagsterInstance.from_config(str(home))


def register_delivery(
    instance: dg.DagsterInstance, delivery: Delivery, family: str = CLINICAL_FAMILY
) -> bool:
    """Add the delivery's partition key to its family's; return False if it was already there."""
    name = deliveries_def(family).name
    assert name is not None
    if instance.has_dynamic_partition(name, delivery.key):
        return False
    instance.add_dynamic_partitions(name, [delivery.key])
    return True


def select_assets(
    defs: dg.Definitions, patterns: Sequence[str], family: str = CLINICAL_FAMILY
) -> list[dg.AssetKey]:
    """The family's asset keys matching shell-style patterns (`curated_*`), in graph order: a
    run materializes one family's deliveries (`family_job`)."""
    own = {o.asset_key for o in asset_outputs(family)}
    graph = defs.resolve_asset_graph().toposorted_asset_keys
    keys = [k for k in graph if k.to_user_string() in own]
    if not patterns:
        return keys
    chosen: list[dg.AssetKey] = []
    for pattern in patterns:
        matched = [k for k in keys if fnmatch.fnmatchcase(k.to_user_string(), pattern)]
        if not matched:
            raise SelectionError(
                f"--select {pattern!r} matches no asset of the {family} family (another "
                f"family's need --family); its assets are "
                f"{', '.join(k.to_user_string() for k in keys)}"
            )
        chosen += [k for k in matched if k not in chosen]
    return chosen


class _FirstLineFormatter(logging.Formatter):
    """One short line per event: step, event type and message, without the job name and run id
    (printed once at the end) or an error's stack trace (it stays in the run's event log)."""

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None)
        if isinstance(meta, dict):
            event = meta.get("dagster_event")
            parts = [
                meta.get("step_key"),
                event.event_type.name if event else None,
                meta.get("orig_message"),
            ]
            text = " - ".join(str(part) for part in parts if part)
            more = bool(event and getattr(event.event_specific_data, "error", None))
        else:
            text, more = record.getMessage(), False
        head, _, rest = text.partition("\n")
        stamp = self.formatTime(record, self.datefmt)
        suffix = " [details in the UI]" if more or rest.strip() else ""
        line = f"{stamp} {record.levelname} {head}"
        # Never wider than the terminal: some Dagster events list every output of a step.
        width = shutil.get_terminal_size(fallback=(120, 24)).columns - len(suffix)
        if len(line) > width:
            line = line[: max(width - 1, 20)] + "…"
        return line + suffix


@dg.logger(
    config_schema={"log_level": dg.Field(str, is_required=False, default_value="INFO")},
    description="Dagster events on stderr, one line each (no stack traces)",
)
def one_line_console(init_context: dg.InitLoggerContext) -> logging.Logger:
    level = logging.getLevelName(str(init_context.logger_config["log_level"]).upper())
    logger = logging.Logger("clinical_platform.run", level=level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_FirstLineFormatter(datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    return logger


@dataclass
class MaterializeOutcome:
    success: bool
    rows: dict[str, int | None] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # one line each
    run_id: str = ""
    # Why the run failed, in delivery terms: each rejected file with its reason.
    root_causes: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)  # "asset:check" -> passed

    @property
    def cause(self) -> str:
        """One line: the rejected files and why, else the first problem."""
        if self.root_causes:
            return "; ".join(self.root_causes)
        return self.problems[0] if self.problems else "see the run in the Dagster UI"


def delivery_assets(layout: LakeLayout, delivery: Delivery) -> list[dg.AssetKey] | None:
    """The assets of a delivery: raw and curated of each dataset it carries (per its
    manifest), and the feature tables; None when the delivery has no manifest to tell."""
    manifest = read_manifest(layout, delivery)
    if manifest is None:
        return None
    return assets_of_files((f["name"] for f in manifest.get("files", [])), layout.family)


def assets_of_files(names: Iterable[str], family: str = CLINICAL_FAMILY) -> list[dg.AssetKey]:
    """Raw and curated of each dataset the files carry, and the feature tables (nothing when
    they carry no dataset)."""
    carried = carried_datasets(names, family)
    outputs = asset_outputs(family)
    keys = [o.asset_key for o in outputs if o.zone is not Zone.FEATURES and o.name in carried]
    keys += [o.asset_key for o in outputs if o.zone is Zone.FEATURES]
    return [dg.AssetKey(k) for k in keys] if carried else []


def family_job(family: str) -> dg.UnresolvedAssetJobDefinition:
    """Every asset of a family, on its deliveries: what `materialize` runs a selection of (the
    implicit job of all assets has no partitions when families have their own)."""
    keys = [dg.AssetKey(o.asset_key) for o in asset_outputs(family)]
    return dg.define_asset_job(
        f"{family}_assets",
        selection=dg.AssetSelection.assets(*keys),
        partitions_def=deliveries_def(family),
    )


def rows_and_status(materialization: dg.AssetMaterialization) -> tuple[str, int | None, str]:
    """An asset's name, row count and status ("accepted" unless the job said otherwise)."""
    row_count = materialization.metadata.get("dagster/row_count")
    status = materialization.metadata.get("status")
    count = row_count.value if isinstance(row_count, dg.IntMetadataValue) else None
    return (
        materialization.asset_key.to_user_string(),
        int(count) if count is not None else None,
        str(status.value) if status is not None else "accepted",
    )


def materialize_delivery(
    defs: dg.Definitions,
    delivery: Delivery,
    instance: dg.DagsterInstance,
    selection: Sequence[dg.AssetKey] | None = None,
    *,
    checks_only: bool = False,
    family: str = CLINICAL_FAMILY,
) -> MaterializeOutcome:
    """Materialize (a selection of) the assets of one delivery in this process, or with
    `checks_only` re-evaluate every check on its committed data (nothing is written)."""
    register_delivery(instance, delivery, family)
    lake = (defs.resources or {}).get("lake")
    if isinstance(lake, ClinicalLake) and not checks_only:
        observe_landed(instance, replace(lake.layout, family=family), [delivery])
    # Progress and problems on the console, one line each; step-by-step DEBUG events and
    # stack traces stay in the run's event log (the UI).
    merged = dg.Definitions.merge(defs, dg.Definitions(loggers={"console": one_line_console}))
    if not checks_only:
        job = dg.Definitions.merge(merged, dg.Definitions(jobs=[family_job(family)]))
        job = job.resolve_job_def(f"{family}_assets")
    elif any(getattr(j, "name", "") == checks_job_name(family) for j in defs.jobs or []):
        job = merged.resolve_job_def(checks_job_name(family))
    else:
        with_checks = dg.Definitions.merge(merged, dg.Definitions(jobs=[checks_job(family)]))
        job = with_checks.resolve_job_def(checks_job_name(family))
    tags = {ENTRY_TAG: "cli"}
    if checks_only:
        # Dagster 1.13 cannot validate a partition for a job of checks alone; the partition tag
        # is what a partitioned run carries, and what the steps read their delivery from.
        tags["dagster/partition"] = delivery.key
    result = job.execute_in_process(
        partition_key=None if checks_only else delivery.key,
        instance=instance,
        asset_selection=list(selection) if selection else None,
        raise_on_error=False,
        tags=tags,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    )
    outcome = MaterializeOutcome(success=result.success, run_id=result.run_id)
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        if materialization is None:
            continue
        name, outcome.rows[name], outcome.statuses[name] = rows_and_status(materialization)
    outcome.checks = {
        f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed
        for e in result.get_asset_check_evaluations()
    }
    blocked: dict[str, str] = {}  # curated asset -> "VS of K was rejected (reason)"
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
            continue
        # A failing blocking check fails the delivery, even where the step went on with the
        # assets that do not read the refused one.
        outcome.success = False
        asset = evaluation.asset_key.to_user_string()
        reason = evaluation.metadata.get("reason")
        detail = f": {reason.value}" if reason is not None else ""
        outcome.problems.append(f"{asset} check {evaluation.check_name} failed{detail}")
        if asset in _RAW_KEYS and evaluation.check_name == FILES_READABLE and reason is not None:
            outcome.root_causes.append(str(reason.value))
        elif asset in _CURATED_BY_KEY:
            dataset = _CURATED_BY_KEY[asset].name.upper()
            if evaluation.check_name in GATE_CHECKS and reason is not None:
                blocked[asset] = f"{dataset} of {delivery.key} was rejected ({reason.value})"
            else:
                blocked[asset] = f"{dataset} of {delivery.key} was not committed{detail}"
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            message = (error.message or "").strip().splitlines()
            first = message[0] if message else "failed"
            if "blocking asset check" in first:
                continue  # already reported above, check by check, with its reason
            if "did not yield or return expected outputs" in first:
                if outcome.problems:
                    continue  # Dagster's word for outputs a failed dataset could not have
                first = (
                    "some selected assets were not produced: select only the domains the "
                    "delivery carries (clinical-platform materialize does)"
                )
            outcome.problems.append(f"step {event.step_key}: {_without_class(first)}")
        elif event.is_step_skipped:
            why = (
                "an asset it reads was not committed"
                if result.success
                else "an upstream step failed"
            )
            outcome.problems.append(f"step {event.step_key} skipped: {why}")
    # A feature table is not built when a curated domain it reads was refused.
    family_features = [o.asset_key for o in asset_outputs(family) if o.zone is Zone.FEATURES]
    wanted = [k.to_user_string() for k in selection] if selection else family_features
    for key in wanted:
        if key in _FEATURE_KEYS and key not in outcome.statuses and not outcome.success:
            reasons = [text for asset, text in blocked.items() if asset in _FEATURE_INPUTS[key]]
            why = "; ".join(reasons) if reasons else "an upstream step failed"
            outcome.problems.append(f"{key} skipped: {why}")
    return outcome


def _without_class(message: str) -> str:
    """`dagster._core.definitions.events.Failure: text` -> `text`."""
    head, sep, tail = message.partition(": ")
    return tail if sep and "." in head and " " not in head else message


# ---- backfill: several deliveries, one Spark application per stage -----------------------------

# What Dagster's own backfills (and `dagster asset materialize --partition-range`) tag a run of a
# partition range with; assets with a single-run backfill policy get the range in one step.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def deliveries_between(
    layout: LakeLayout, study: str, first: Delivery | None, last: Delivery | None
) -> list[Delivery]:
    """The study's landed deliveries from `first` to `last` (both included), oldest first."""
    return [
        d
        for d in landed_deliveries(layout, study)
        if (first is None or first <= d) and (last is None or d <= last)
    ]


def partition_ranges(registered: Sequence[str], keys: Iterable[str]) -> list[list[str]]:
    """`keys` as ranges of neighbours in the order their partitions were registered.

    A run's range spans every partition registered between its ends, so a partition that is not
    asked for (another study's delivery landed in between) ends one range and starts the next.
    """
    wanted = set(keys)
    ranges: list[list[str]] = [[]]
    for key in registered:
        if key in wanted:
            ranges[-1].append(key)
        elif ranges[-1]:
            ranges.append([])
    return [keys_of_range for keys_of_range in ranges if keys_of_range]


@dataclass
class DeliveryOutcome:
    """What a backfill did to one delivery: each selected asset it carries, and its checks."""

    delivery: Delivery
    assets: list[str]
    run_id: str
    statuses: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # failed blocking checks, one line each
    root_causes: list[str] = field(default_factory=list)  # rejected files, with their reasons

    @property
    def success(self) -> bool:
        accepted = all(self.statuses.get(a) == "accepted" for a in self.assets)
        return accepted and not self.problems

    @property
    def line(self) -> str:
        """`KEY  failed  12/15 assets  dm.xpt: ... (raw_dm rejected, curated_dm not committed)`."""
        accepted = [a for a in self.assets if self.statuses.get(a) == "accepted"]
        head = (
            f"{self.delivery.key}  {'succeeded' if self.success else 'failed':<9}  "
            f"{len(accepted)}/{len(self.assets)} assets"
        )
        if self.success:
            return head
        cause = "; ".join(self.root_causes) or (self.problems[0] if self.problems else "")
        others = ", ".join(
            f"{a} {self.statuses.get(a, 'not materialized')}"
            for a in self.assets
            if a not in accepted
        )
        return f"{head}  {cause} ({others})" if cause and others else f"{head}  {cause or others}"


@dataclass
class BackfillOutcome:
    deliveries: list[DeliveryOutcome] = field(default_factory=list)
    runs: list[tuple[str, bool]] = field(default_factory=list)  # run id, succeeded
    problems: list[str] = field(default_factory=list)  # failed or skipped steps, one line each

    @property
    def success(self) -> bool:
        return all(ok for _, ok in self.runs) and all(d.success for d in self.deliveries)


def backfill_deliveries(
    defs: dg.Definitions,
    layout: LakeLayout,
    deliveries: Sequence[Delivery],
    instance: dg.DagsterInstance,
    selection: Sequence[dg.AssetKey],
) -> BackfillOutcome:
    """Materialize the selected assets of the deliveries they carry in this process: one run per
    range of neighbouring partitions (see `partition_ranges`; usually one), in which each stage
    is one Spark application for every delivery of the range."""
    family = layout.family
    for delivery in deliveries:
        register_delivery(instance, delivery, family)
    observe_landed(instance, layout, deliveries)
    name = deliveries_def(family).name
    assert name is not None
    # The family's job: the implicit one of all assets has no partitions now that each family
    # has its own.
    job = dg.Definitions.merge(
        defs,
        dg.Definitions(loggers={"console": one_line_console}, jobs=[family_job(family)]),
    ).resolve_job_def(f"{family}_assets")
    outcome = BackfillOutcome()
    for keys in partition_ranges(
        instance.get_dynamic_partitions(name), [d.key for d in deliveries]
    ):
        members = [Delivery.from_key(key) for key in keys]
        assets = {d.key: carried_of(layout, d, selection) for d in members}
        chosen = [k for k in selection if any(k in found for found in assets.values())]
        if not chosen:
            outcome.problems.append(f"{', '.join(keys)}: carry no file for the selected assets")
            continue
        one = len(keys) == 1
        result = job.execute_in_process(
            partition_key=keys[0] if one else None,
            instance=instance,
            asset_selection=chosen,
            raise_on_error=False,
            tags={ENTRY_TAG: "cli"}
            | ({} if one else {RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1]}),
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )
        outcome.runs.append((result.run_id, result.success))
        outcome.deliveries += delivery_outcomes(result, members, assets)
        outcome.problems += step_problems(result)
    return outcome


def carried_of(
    layout: LakeLayout, delivery: Delivery, selection: Sequence[dg.AssetKey]
) -> list[dg.AssetKey]:
    """The selected assets of the datasets the delivery carries (all without a manifest)."""
    carried = delivery_assets(layout, delivery)
    return [k for k in selection if carried is None or k in carried]


def delivery_outcomes(
    result: dg.ExecuteInProcessResult,
    members: Sequence[Delivery],
    assets: dict[str, list[dg.AssetKey]],
) -> list[DeliveryOutcome]:
    """Each delivery's materializations and failed blocking checks, found by partition."""
    found = {
        d.key: DeliveryOutcome(d, [k.to_user_string() for k in assets[d.key]], result.run_id)
        for d in members
    }
    only = members[0].key if len(members) == 1 else None  # a one-partition run's checks name none
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        target = found.get(str(materialization.partition)) if materialization else None
        if materialization is None or target is None:
            continue
        name, target.rows[name], target.statuses[name] = rows_and_status(materialization)
    for evaluation in result.get_asset_check_evaluations():
        target = found.get(evaluation.partition or only or "")
        if target is None or evaluation.passed:
            continue
        if evaluation.severity != dg.AssetCheckSeverity.ERROR:
            continue
        asset = evaluation.asset_key.to_user_string()
        reason = evaluation.metadata.get("reason")
        detail = f": {reason.value}" if reason is not None else ""
        target.problems.append(f"{asset} check {evaluation.check_name} failed{detail}")
        if reason is not None and asset in _RAW_KEYS and evaluation.check_name == FILES_READABLE:
            target.root_causes.append(str(reason.value))
    return list(found.values())


def step_problems(result: dg.ExecuteInProcessResult) -> list[str]:
    """Each failed or skipped step of a run, one line each (stack traces stay in the UI)."""
    problems = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            message = (event.step_failure_data.error.message or "").strip().splitlines()
            first = _without_class(message[0]) if message else "failed"
            problems.append(f"step {event.step_key}: {first}")
        elif event.is_step_skipped:
            problems.append(f"step {event.step_key} skipped: an upstream step failed")
    return problems
