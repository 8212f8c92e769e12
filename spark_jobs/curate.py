"""raw -> curated + quarantine: conformed SDTM, every rule of the contract evaluated in one pass.

    spark-submit --py-files spark_jobs.zip curate.py \
        --lake <lake root> (--study <STUDY> --delivery <DELIVERY> | --deliveries S/D1,S/D2,...) \
        [--datasets dm,ae,...] [--run-id ID] [--today YYYY-MM-DD] [--checks-only]

Per dataset, in named steps: read the raw partition (refusing a rejected or incomplete one),
evaluate the contract's rules (conform, collapse duplicates, find conflicts, reasons and
flags), write curated and quarantine, reconcile `raw = curated + quarantined + collapsed`,
and only then commit and report. With --checks-only nothing is written: the rules are
re-evaluated and compared with what the committed partitions hold (the UI's "execute checks").
Several deliveries are curated oldest first in one application, each committed alone, so each
compares its volume with the one before, as separate runs would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pyspark.sql import Column, DataFrame, Observation, Row, SparkSession
from pyspark.sql import functions as F

from spark_jobs.contracts import (
    DatasetContract,
    Effect,
    Rule,
    RuleKind,
    carried_datasets,
    contract_for,
)
from spark_jobs.contracts.layout import Delivery, Zone, delivery_order
from spark_jobs.contracts.omics import COUNTS, OMICS_FAMILY
from spark_jobs.contracts.outputs import (
    CURATED_RUN_ID,
    CURRENT_SUFFIX,
    NATURAL_KEY,
    DatasetOutput,
    output,
)
from spark_jobs.contracts.protocol import EntryPoint
from spark_jobs.contracts.sensor import SENSOR_FAMILY
from spark_jobs.contracts.tables import PARTITION_COLUMNS
from spark_jobs.families import omics, sensor
from spark_jobs.quality.conform import raw_name
from spark_jobs.quality.evaluate import evaluate, key_text, rejected_condition, row_rules
from spark_jobs.quality.metrics import (
    examples_column,
    examples_of,
    masked_details,
    rule_metrics,
)
from spark_jobs.quality.rule_sql import EvaluationContext
from spark_jobs.runtime.arguments import (
    DeliveryArgs,
    add_datasets_argument,
    dataset_names,
    delivery_batch,
    delivery_parser,
)
from spark_jobs.runtime.reporting import (
    CheckOutcome,
    JobReporter,
    column_lineage_value,
    json_value,
    table_metadata,
    table_schema_value,
)
from spark_jobs.runtime.session import (
    application_name,
    build_session,
    for_each_dataset,
    for_each_delivery,
    run_job,
    shuffles_sized_to,
)
from spark_jobs.storage.current import holder
from spark_jobs.storage.filesystem import LakeStorage
from spark_jobs.storage.lineage import input_reference, lineage_record
from spark_jobs.storage.tables import Committed, LakeTables, Staged, delivered, table_shaped

EXAMPLES = 5


@dataclass(frozen=True)
class CurateArgs:
    job: DeliveryArgs  # the delivery being curated
    datasets: tuple[str, ...]
    today: dt.date
    batch: tuple[DeliveryArgs, ...] = ()  # every delivery of the application, when several


def parse_args(argv: Sequence[str] | None = None) -> CurateArgs:
    parser = delivery_parser("curate.py", __doc__)
    add_datasets_argument(parser)
    parser.add_argument("--today", default=None, help="date for the future-date rule (UTC today)")
    ns = parser.parse_args(argv)
    today = dt.date.fromisoformat(ns.today) if ns.today else dt.datetime.now(dt.UTC).date()
    batch = delivery_batch(parser, ns)
    return CurateArgs(batch[0], dataset_names(parser, ns.datasets, ns.family), today, batch)


# ---- pure steps: checks from what was read and counted ------------------------------------


def check(rule: Rule, passed: bool, **metadata: Any) -> CheckOutcome:
    """A curated check outcome; its rule decides effect, blocking and description."""
    return CheckOutcome(
        name=rule.name,
        passed=passed,
        blocking=rule.blocking,
        metadata={"effect": rule.effect.value, **metadata},
        effect=rule.effect.value,
        description=rule.description,
    )


def rule_of(contract: DatasetContract, kind: RuleKind) -> Rule:
    return contract.rules_of(kind)[0]


def gate_checks(
    contract: DatasetContract, lineage: Mapping[str, Any] | None, raw_key: str, key: str
) -> tuple[list[CheckOutcome], str | None]:
    """files_readable and required_columns from the raw partition's lineage record.

    Returns the outcomes and, when one failed, the reason nothing of the dataset is curated.
    A file that lacks a required column is readable: ingest rejects it, and here it fails
    required_columns rather than files_readable.
    """
    readable = rule_of(contract, RuleKind.FILES_READABLE)
    if lineage is None:
        reason = f"{raw_key} has not been materialized for {key}"
        return [check(readable, False, reason=reason)], reason
    sources = lineage.get("sources", [])
    missing = {  # files read far enough to know their columns
        s["name"]: sorted(set(contract.required_columns) - set(s["columns"]))
        for s in sources
        if s.get("columns")
    }
    missing = {name: columns for name, columns in missing.items() if columns}
    unreadable = [s for s in sources if not s.get("accepted") and s["name"] not in missing]
    if lineage["status"] != "accepted" and (unreadable or not missing):
        reason = lineage.get("reason") or f"raw {lineage['status']}"
        return [check(readable, False, reason=reason, rejected_files=unreadable)], reason
    outcomes = [check(readable, True, files=[s["name"] for s in sources])]
    required = rule_of(contract, RuleKind.REQUIRED_COLUMNS)
    if missing:
        reason = "; ".join(
            f"{name} lacks required column(s) {', '.join(cols)}" for name, cols in missing.items()
        )
        return [*outcomes, check(required, False, reason=reason, missing=missing)], reason
    return [*outcomes, check(required, True, required=list(contract.required_columns))], None


def rule_checks(contract: DatasetContract, summary: Mapping[str, Any]) -> list[CheckOutcome]:
    """exact_duplicates and one outcome per row rule, from the metrics of the pass."""
    rows, collapsed = int(summary["rows"]), int(summary["collapsed"])
    collapse = rule_of(contract, RuleKind.EXACT_DUPLICATES)
    outcomes = [
        check(
            collapse,
            collapsed == 0 or collapse.effect is Effect.OFF,
            collapsed_rows=collapsed,
            rows_kept=rows,
        )
    ]
    for rule in row_rules(contract):
        failing = int(summary[rule.name] or 0)
        sample = sorted(examples_of(summary[examples_column(rule.name)]), key=lambda e: e["key"])
        outcomes.append(
            check(
                rule,
                failing == 0 or rule.effect is Effect.FLAG,
                failing_rows=failing,
                failing_fraction=round(failing / rows, 6) if rows else 0.0,
                # Rows by file and number, details without subject ids: what reaches Dagster's
                # event log names no patient (the quarantine table has the keys).
                examples=[e["row"] for e in sample],
                example_details=[d for e in sample for d in masked_details(e)][:EXAMPLES],
            )
        )
    return outcomes


@dataclass(frozen=True)
class Balance:
    """What reconciliation compares: rows read, written to each side, and collapsed."""

    raw: int
    curated: int
    quarantined: int
    found: int  # rows the pass set aside for quarantine
    collapsed: int


def reconciliation(contract: DatasetContract, balance: Balance, **extra: Any) -> CheckOutcome:
    """raw = curated + quarantined + collapsed, and quarantine holds what the pass found."""
    b = balance
    balanced = b.raw == b.curated + b.quarantined + b.collapsed and b.quarantined == b.found
    return check(
        rule_of(contract, RuleKind.RECONCILIATION),
        balanced,
        raw_rows=b.raw,
        curated_rows=b.curated,
        quarantined_rows=b.quarantined,
        collapsed_duplicates=b.collapsed,
        **extra,
    )


def volume(contract: DatasetContract, rows: int, previous: tuple[str, int] | None) -> CheckOutcome:
    """Row count within the configured change of the study's previous delivery."""
    rule = rule_of(contract, RuleKind.VOLUME)
    if previous is None:
        return check(
            rule, True, rows=rows, previous_rows=None, note="no previous delivery of this study"
        )
    delivery, previous_rows = previous
    change = (rows - previous_rows) / previous_rows if previous_rows else float(rows > 0)
    limit = contract.volume_change_limit
    return check(
        rule,
        abs(change) <= limit,
        rows=rows,
        previous_delivery=delivery,
        previous_rows=previous_rows,
        change_fraction=round(change, 6),
        limit=limit,
    )


# ---- pure steps: the two frames written ---------------------------------------------------


def curated_frame(
    evaluated: DataFrame, contract: DatasetContract, run_id: str, delivery: Delivery
) -> DataFrame:
    """Rows kept, in the curated table's declared columns."""
    declared = output(Zone.CURATED, contract.name).column_names
    kept = evaluated.filter(~F.expr(rejected_condition(contract)))
    if contract.family == SENSOR_FAMILY:
        kept = sensor.minutes(kept)
    elif contract.family == OMICS_FAMILY and contract.name == COUNTS.name:
        kept = omics.with_sample_qc(kept)
    computed = {CURATED_RUN_ID: F.lit(run_id), **partition_values(delivery)}
    columns = [computed[c].alias(c) if c in computed else F.col(c) for c in declared]
    return kept.select(*columns)


def source_rows_column(contract: DatasetContract) -> str | None:
    """The column counting the kept source rows each curated row stands for, where a curated
    row summarises several (sensor minutes); reconciliation counts those, not the rows."""
    return sensor.SECONDS_WORN if contract.family == SENSOR_FAMILY else None


def partition_values(delivery: Delivery) -> dict[str, Column]:
    study, key = PARTITION_COLUMNS
    return {study: F.lit(delivery.study), key: F.lit(delivery.delivery)}


def quarantine_frame(
    evaluated: DataFrame, contract: DatasetContract, data_columns: Sequence[str], run_id: str
) -> DataFrame:
    """Rows set aside: raw values as delivered, natural key, provenance and every reason.

    The partition columns are added when the frame is shaped to the table (`table_shaped`).
    """
    declared = output(Zone.QUARANTINE, contract.name)
    fixed = [
        c.name for c in declared.columns if not c.delivered and c.name not in PARTITION_COLUMNS
    ]
    computed = {NATURAL_KEY: F.expr(key_text(contract)), CURATED_RUN_ID: F.lit(run_id)}
    return evaluated.filter(F.expr(rejected_condition(contract))).select(
        *[F.col(raw_name(c)).alias(c) for c in data_columns],
        *[computed[c].alias(c) if c in computed else F.col(c) for c in fixed],
    )


# ---- the run of one dataset ---------------------------------------------------------------


@dataclass
class DatasetCuration:
    """Curates one dataset of one delivery and reports what it did."""

    spark: SparkSession
    args: CurateArgs
    reporter: JobReporter
    contract: DatasetContract
    tables: LakeTables
    context: EvaluationContext
    outcomes: list[CheckOutcome] = field(default_factory=list)

    @property
    def curated(self) -> DatasetOutput:
        return output(Zone.CURATED, self.contract.name)

    @property
    def raw(self) -> DatasetOutput:
        return output(Zone.RAW, self.contract.name)

    @property
    def quarantine(self) -> DatasetOutput:
        return output(Zone.QUARANTINE, self.contract.name)

    @property
    def key(self) -> str:
        return self.args.job.delivery.key

    def report(self, *outcomes: CheckOutcome) -> None:
        self.outcomes += outcomes
        self.reporter.checks(self.curated.asset_key, self.outcomes)

    def run(self) -> None:
        lineage = self.tables.committed_record(self.raw, self.args.job.delivery)
        gate, reason = gate_checks(self.contract, lineage, self.raw.asset_key, self.key)
        self.outcomes += gate
        if reason is not None or lineage is None:
            failed = next(o for o in gate if not o.passed)
            self.reporter.error(
                f"{self.curated.asset_key} {self.key}: {failed.name} failed: {reason}; "
                "nothing written to curated"
            )
            self.report()
            return
        with shuffles_sized_to(self.spark, int(lineage["rows"]["out"])):
            self.curate(lineage)

    def curate(self, raw_lineage: Mapping[str, Any]) -> None:
        schema = [(c["name"], c["type"]) for c in raw_lineage["schema"]]
        raw = delivered(self.tables.read(self.raw, self.args.job.delivery), schema)
        data_columns = [c for c in raw.columns if not c.startswith("_")]
        source_types = {
            f.name: f.dataType.simpleString() for f in raw.schema.fields if f.name in data_columns
        }
        unknown = [c for c in data_columns if c not in self.contract.column_names]
        self.outcomes.append(
            check(
                rule_of(self.contract, RuleKind.SCHEMA_DRIFT), not unknown, unknown_columns=unknown
            )
        )
        if unknown:
            self.reporter.warning(
                f"{self.curated.asset_key} {self.key}: columns outside the contract kept in raw "
                f"only: {', '.join(unknown)}"
            )
        # Nothing is cached: the pass that writes curated also counts every rule (observed
        # metrics). Rows to quarantine are rare, so they are written by a second run of the
        # same plan over the same published raw partition, and only when the first pass found
        # any; reconciliation proves that the two passes agree.
        evaluated = evaluate(raw, self.contract, source_types, self.context)
        raw_rows = int(raw_lineage["rows"]["out"])
        if self.args.job.checks_only:
            self.recheck_committed(evaluated, raw_rows)
        else:
            self.write(evaluated, data_columns, raw_lineage)

    def recheck_committed(self, evaluated: DataFrame, raw_rows: int) -> None:
        """Checks-only run: compare a fresh evaluation with the committed partitions."""
        row = evaluated.agg(*rule_metrics(self.contract, EXAMPLES, as_json=True)).first()
        assert row is not None
        summary = row.asDict(recursive=True)
        self.outcomes += rule_checks(self.contract, summary)
        delivery = self.args.job.delivery
        if self.tables.committed_record(self.curated, delivery) is None:
            reason = f"{self.curated.asset_key} has no committed partition to check"
            rule = rule_of(self.contract, RuleKind.RECONCILIATION)
            self.report(check(rule, False, reason=reason))
            return
        stored_curated, missing = self.tables.verified_count(self.curated, delivery)
        accounted = stored_curated
        counted = source_rows_column(self.contract)
        if counted is not None:
            found = self.tables.read(self.curated, delivery).agg(F.sum(counted)).first()
            accounted = int(found[0] or 0) if found is not None else 0
        stored_quarantine = 0
        if self.tables.committed_record(self.quarantine, delivery) is not None:
            stored_quarantine, missing_q = self.tables.verified_count(self.quarantine, delivery)
            missing += missing_q
        expected = int(summary["rejected"])
        balance = Balance(
            raw_rows, accounted, stored_quarantine, expected, int(summary["collapsed"])
        )
        extra: dict[str, Any] = {"expected_quarantined_rows": expected}
        if missing:
            extra |= {"missing_files": missing, "reason": f"{len(missing)} data file(s) missing"}
        reconciled = reconciliation(self.contract, balance, **extra)
        if missing:
            reconciled = replace(reconciled, passed=False)
        self.report(
            reconciled, volume(self.contract, stored_curated, self.previous_delivery_rows())
        )

    def write(
        self, evaluated: DataFrame, data_columns: Sequence[str], raw_lineage: Mapping[str, Any]
    ) -> None:
        """Stage curated while counting every rule, stage quarantine, prove the balance."""
        contract, job = self.contract, self.args.job
        observation = Observation(f"rules_{contract.name}")
        observed = evaluated.observe(observation, *rule_metrics(contract, EXAMPLES, as_json=True))
        self.tables.ensure(self.curated)
        frame = curated_frame(observed, contract, job.run_id, job.delivery)
        counted, accounted = source_rows_column(contract), None
        if counted is not None:
            accounted = Observation(f"accounted_{contract.name}")
            frame = frame.observe(accounted, F.sum(counted).alias("rows"))
        staged_c = self.tables.stage(frame, self.curated, job.delivery)
        # Observed values arrive as a dict of Rows; as one Row they convert like a query's.
        summary = Row(**observation.get).asDict(recursive=True)
        staged_q = self.stage_quarantine(evaluated, data_columns, int(summary["rejected"]))
        self.outcomes += rule_checks(contract, summary)
        self.warn_quarantined(summary)
        balance = Balance(
            int(raw_lineage["rows"]["out"]),
            staged_c.rows if accounted is None else int(accounted.get["rows"] or 0),
            staged_q.rows if staged_q else 0,
            int(summary["rejected"]),
            int(summary["collapsed"]),
        )
        reconciled = reconciliation(contract, balance)
        self.outcomes += [
            reconciled,
            volume(contract, staged_c.rows, self.previous_delivery_rows()),
        ]
        if not reconciled.passed:
            for staged in (staged_c, staged_q):
                if staged is not None:
                    self.tables.discard(staged)
            self.reporter.error(
                f"{self.curated.asset_key} {self.key}: reconciliation failed: raw {balance.raw} "
                f"!= curated {balance.curated} + quarantined {balance.quarantined} (of "
                f"{balance.found} found) + collapsed {balance.collapsed}; nothing committed"
            )
            self.report()
            return
        self.commit(raw_lineage, staged_c, staged_q, balance.collapsed)

    def stage_quarantine(
        self, evaluated: DataFrame, data_columns: Sequence[str], rejected: int
    ) -> Staged | None:
        """Stage the rows set aside; nothing at all when there are none, now or before."""
        job = self.args.job
        quarantine = quarantine_frame(evaluated, self.contract, data_columns, job.run_id)
        if not rejected:
            if self.tables.committed_record(self.quarantine, job.delivery) is None:
                return None  # no rows of this delivery in quarantine, and none to add
            quarantine = self.spark.createDataFrame([], quarantine.schema)
        shaped = table_shaped(quarantine, self.quarantine, self.tables, job.delivery)
        return self.tables.stage(shaped, self.quarantine, job.delivery)

    def warn_quarantined(self, summary: Mapping[str, Any]) -> None:
        for rule in row_rules(self.contract):
            failing = int(summary[rule.name] or 0)
            if failing and rule.effect is Effect.QUARANTINE:
                self.reporter.warning(
                    f"{self.curated.asset_key} {self.key}: {failing} row(s) quarantined by "
                    f"{rule.name}"
                )

    def previous_delivery_rows(self) -> tuple[str, int] | None:
        """The committed row count of the study's latest delivery before this one."""
        delivery = self.args.job.delivery
        current = delivery_order(delivery.delivery)
        earlier = [
            r
            for r in self.tables.records(self.curated, delivery.study)
            if delivery_order(Delivery.from_key(r["partition"]).delivery) < current
        ]
        if not earlier:
            return None
        latest = max(
            earlier, key=lambda r: delivery_order(Delivery.from_key(r["partition"]).delivery)
        )
        return Delivery.from_key(latest["partition"]).delivery, int(latest["rows"]["out"])

    def inputs(self, raw_lineage: Mapping[str, Any]) -> list[dict[str, Any]]:
        inputs = [input_reference(self.raw, self.key, raw_lineage)]
        if self.contract.references_dm and self.context.dm_lineage is not None:
            inputs.append(dict(self.context.dm_lineage))
        return inputs

    def commit(
        self,
        raw_lineage: Mapping[str, Any],
        staged_c: Staged,
        staged_q: Staged | None,
        collapsed: int,
    ) -> None:
        """Publish quarantine, then curated, record their lineage, then report."""
        job = self.args.job
        rows = {
            "in": int(raw_lineage["rows"]["out"]),
            "out": staged_c.rows,
            "quarantined": staged_q.rows if staged_q else 0,
            "collapsed": collapsed,
        }
        common = {
            "delivery": job.delivery,
            "run_id": job.run_id,
            "application_id": self.spark.sparkContext.applicationId,
            "status": "accepted",
            "inputs": self.inputs(raw_lineage),
            "rows": rows,
            "checks": [o.as_record() for o in self.outcomes],
        }
        committed = []
        quarantine_snapshot = None
        if staged_q is not None:
            quarantine_snapshot = self.tables.publish(staged_q)
            record = lineage_record(
                output=self.quarantine,
                snapshot_id=quarantine_snapshot,
                content_hash=staged_q.content_hash,
                data_hash=staged_q.data_hash,
                **common,
            )
            committed.append(Committed(self.quarantine, job.delivery, quarantine_snapshot, record))
        snapshot = self.tables.publish(staged_c)
        curated_record = lineage_record(
            output=self.curated,
            snapshot_id=snapshot,
            content_hash=staged_c.content_hash,
            data_hash=staged_c.data_hash,
            quarantine_table=self.quarantine.table,
            quarantine_snapshot_id=quarantine_snapshot,
            schema=[{"name": n, "type": t} for n, t, _ in self.written_schema()],
            **common,
        )
        sealed = self.tables.seal(Committed(self.curated, job.delivery, snapshot, curated_record))
        current = self.refresh_current({**curated_record, "record_sha256": sealed.digest})
        # One append for the delivery's records of curated, quarantine and current data.
        self.tables.record(*committed, sealed, *current)
        self.report_materialization(rows, staged_c, snapshot, common["inputs"])

    def refresh_current(self, curated_record: Mapping[str, Any]) -> list[Committed]:
        """When this delivery is the study's latest to carry the dataset, its rows become the
        study's current data (`curated.<family>_<dataset>_current`), in one commit; its
        lineage record to append."""
        delivery = self.args.job.delivery
        if not self.contract.cumulative:
            return []  # each delivery adds to the earlier ones: the curated table is the data
        latest = holder(self.tables, self.contract.name, delivery.study)
        if latest is None or latest.delivery != delivery:
            return []  # a later delivery carried the dataset: it holds the current data
        current = output(Zone.CURATED, f"{self.contract.name}{CURRENT_SUFFIX}")
        snapshot = self.tables.replace_study(current, self.curated, delivery)
        record = lineage_record(
            output=current,
            delivery=delivery,
            run_id=self.args.job.run_id,
            application_id=self.spark.sparkContext.applicationId,
            status="accepted",
            snapshot_id=snapshot,
            inputs=[input_reference(self.curated, self.key, curated_record)],
            rows={"out": curated_record["rows"]["out"]},
            content_hash=curated_record.get("content_hash"),
            data_hash=curated_record.get("data_hash"),
        )
        self.reporter.info(
            f"{current.table}: study {delivery.study} now holds delivery {delivery.delivery} "
            f"(snapshot {snapshot})"
        )
        return [Committed(current, delivery, snapshot, record)]

    def written_schema(self) -> list[tuple[str, str, str | None]]:
        return [(c.name, c.type, c.description or None) for c in self.curated.columns]

    def report_materialization(
        self,
        rows: Mapping[str, int],
        written: Staged,
        snapshot: int,
        inputs: list[dict[str, Any]],
    ) -> None:
        curated, job = self.curated, self.args.job
        self.reporter.info(
            f"{curated.asset_key} {self.key}: {rows['in']} raw -> {written.rows} curated, "
            f"{rows['quarantined']} quarantined, {rows['collapsed']} duplicates collapsed"
        )
        self.reporter.materialization(
            curated.asset_key,
            {
                "status": "accepted",
                "dagster/row_count": written.rows,
                "rows_in": rows["in"],
                "rows_out": written.rows,
                "rows_quarantined": rows["quarantined"],
                "duplicates_collapsed": rows["collapsed"],
                "content_hash": written.content_hash,
                "data_hash": written.data_hash,
                **table_metadata(curated, job, snapshot),
                "quarantine_table": self.quarantine.table,
                "inputs": json_value(inputs),
                "dagster/column_schema": table_schema_value(self.written_schema()),
                "dagster/column_lineage": column_lineage_value(curated),
                "spark_application_id": self.spark.sparkContext.applicationId,
            },
            data_version=written.content_hash,
        )
        self.report()


# ---- the job ------------------------------------------------------------------------------


def dm_reference(spark: SparkSession, tables: LakeTables, args: CurateArgs) -> EvaluationContext:
    """Subjects of the study's current DM as of this delivery (its own DM, or the latest
    earlier delivery's when it carries none), from raw, for referential integrity."""
    delivery = args.job.delivery
    raw_dm = output(Zone.RAW, "dm")

    def unavailable(reason: str) -> EvaluationContext:
        return EvaluationContext(delivery.study, args.today, None, reason)

    found = holder(tables, "dm", delivery)
    if found is None:
        return unavailable(f"no delivery of {delivery.study} up to {delivery.key} carried DM")
    lineage = found.raw_record
    if found.rejected:
        return unavailable(f"DM of {found.delivery.key} was {lineage['status']}")
    schema = [(c["name"], c["type"]) for c in lineage["schema"]]
    if "USUBJID" not in [name for name, _ in schema]:
        return unavailable(f"DM of {found.delivery.key} has no USUBJID column")
    dm = delivered(tables.read(raw_dm, found.delivery), schema)
    subjects = dm.select(F.rtrim(F.col("USUBJID")).alias("USUBJID")).where("USUBJID != ''")
    reference = input_reference(raw_dm, found.delivery.key, lineage)
    return EvaluationContext(delivery.study, args.today, subjects, dm_lineage=reference)


def curate(args: CurateArgs, reporter: JobReporter) -> None:
    """Every delivery of the run, oldest first, in one Spark application."""
    batch = args.batch or (args.job,)
    job = args.job
    spark = build_session(application_name(EntryPoint.CURATE, batch), job.layout.root)
    tables = LakeTables(spark, job.layout, job.run_id)
    for_each_delivery(
        batch,
        reporter,
        lambda job: curate_delivery(spark, tables, replace(args, job=job), reporter),
    )


def curate_delivery(
    spark: SparkSession, tables: LakeTables, args: CurateArgs, reporter: JobReporter
) -> None:
    job = args.job
    contracts = {n: contract_for(n, job.delivery.study, job.layout.family) for n in args.datasets}
    if any(c.references_dm for c in contracts.values()):
        context = dm_reference(spark, tables, args)
    else:
        context = EvaluationContext(job.delivery.study, args.today, None, "DM is not referenced")
    datasets = carried_in_batch(spark, args, reporter) if len(args.batch) > 1 else args.datasets

    def curate_dataset(name: str) -> None:
        contract = contracts[name]
        DatasetCuration(spark, args, reporter, contract, tables, context).run()

    for_each_dataset(spark, datasets, curate_dataset)


def carried_in_batch(
    spark: SparkSession, args: CurateArgs, reporter: JobReporter
) -> tuple[str, ...]:
    """The run's datasets this delivery carries, per its manifest: a batch asks for the datasets
    of all its deliveries, and one a delivery does not carry keeps its earlier current data."""
    job = args.job
    storage = LakeStorage(spark)
    manifest = job.layout.manifest(job.delivery)
    try:
        files = storage.read_json(manifest)["files"] if storage.exists(manifest) else None
        names = [f["name"] for f in files] if files is not None else None
        carried = set(carried_datasets(names, job.layout.family)) if names is not None else None
    except (ValueError, KeyError, TypeError):
        carried = None  # ingest said what is wrong with the manifest
    if carried is None:
        return args.datasets
    for name in args.datasets:
        if name not in carried:
            curated = output(Zone.CURATED, name)
            reporter.info(f"{curated.asset_key} {job.delivery.key}: not in this delivery; skipped")
    return tuple(name for name in args.datasets if name in carried)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    run_job(EntryPoint.CURATE, lambda reporter: curate(args, reporter))


if __name__ == "__main__":
    main()
