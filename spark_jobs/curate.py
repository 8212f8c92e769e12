"""raw -> curated + quarantine: conformed SDTM, every rule of the contract evaluated in one pass.

    spark-submit --py-files spark_jobs.zip curate.py \
        --lake <lake root> --study <STUDY> --delivery <DELIVERY> \
        [--datasets dm,ae,...] [--run-id ID] [--today YYYY-MM-DD] [--checks-only]

Per dataset, in named steps: read the raw partition (refusing a rejected or incomplete one),
evaluate the contract's rules (conform, collapse duplicates, find conflicts, reasons and
flags), write curated and quarantine, reconcile `raw = curated + quarantined + collapsed`,
and only then commit and report. With --checks-only nothing is written: the rules are
re-evaluated and compared with what the committed partitions hold (the UI's "execute checks").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, Observation, Row, SparkSession
from pyspark.sql import functions as F

from spark_jobs.contracts import DatasetContract, Effect, Rule, RuleKind, contract_for
from spark_jobs.contracts.layout import Delivery, Zone, deliveries_in, delivery_order
from spark_jobs.contracts.outputs import (
    CURATED_RUN_ID,
    NATURAL_KEY,
    DatasetOutput,
    output,
)
from spark_jobs.contracts.protocol import EntryPoint
from spark_jobs.quality.conform import raw_name
from spark_jobs.quality.evaluate import evaluate, key_text, rejected_condition, row_rules
from spark_jobs.quality.metrics import examples_column, examples_of, rule_metrics
from spark_jobs.quality.rule_sql import EvaluationContext
from spark_jobs.runtime.arguments import (
    DeliveryArgs,
    add_datasets_argument,
    dataset_names,
    delivery_args,
    delivery_parser,
)
from spark_jobs.runtime.reporting import (
    CheckOutcome,
    JobReporter,
    column_lineage_value,
    json_value,
    path_value,
    table_schema_value,
)
from spark_jobs.runtime.session import JobError, build_session, run_job
from spark_jobs.storage.filesystem import LakeStorage
from spark_jobs.storage.partitions import (
    PartitionWriter,
    WrittenData,
    lineage_record,
    write_observed,
)

EXAMPLES = 5


@dataclass(frozen=True)
class CurateArgs:
    job: DeliveryArgs
    datasets: tuple[str, ...]
    today: dt.date


def parse_args(argv: Sequence[str] | None = None) -> CurateArgs:
    parser = delivery_parser("curate.py", __doc__)
    add_datasets_argument(parser)
    parser.add_argument("--today", default=None, help="date for the future-date rule (UTC today)")
    ns = parser.parse_args(argv)
    today = dt.date.fromisoformat(ns.today) if ns.today else dt.datetime.now(dt.UTC).date()
    return CurateArgs(delivery_args(parser, ns), dataset_names(parser, ns.datasets), today)


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
    """
    readable = rule_of(contract, RuleKind.FILES_READABLE)
    if lineage is None:
        reason = f"{raw_key} has not been materialized for {key}"
        return [check(readable, False, reason=reason)], reason
    sources = lineage.get("sources", [])
    if lineage["status"] != "accepted":
        reason = lineage.get("reason") or f"raw {lineage['status']}"
        rejected = [s for s in sources if not s.get("accepted")]
        return [check(readable, False, reason=reason, rejected_files=rejected)], reason
    outcomes = [check(readable, True, files=[s["name"] for s in sources])]
    required = rule_of(contract, RuleKind.REQUIRED_COLUMNS)
    missing = {
        s["name"]: sorted(set(contract.required_columns) - set(s.get("columns", [])))
        for s in sources
    }
    missing = {name: columns for name, columns in missing.items() if columns}
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
                examples=[e["key"] for e in sample],
                example_details=[d for e in sample for d in e["details"]][:EXAMPLES],
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


def curated_frame(evaluated: DataFrame, contract: DatasetContract, run_id: str) -> DataFrame:
    """Rows kept, in the curated zone's declared columns."""
    declared = output(Zone.CURATED, contract.name).column_names
    rejected = F.expr(rejected_condition(contract))
    columns = [F.lit(run_id).alias(c) if c == CURATED_RUN_ID else F.col(c) for c in declared]
    return evaluated.filter(~rejected).select(*columns)


def quarantine_frame(
    evaluated: DataFrame, contract: DatasetContract, data_columns: Sequence[str], run_id: str
) -> DataFrame:
    """Rows set aside: raw values as delivered, natural key, provenance and every reason."""
    declared = output(Zone.QUARANTINE, contract.name)
    fixed = [c.name for c in declared.columns if not c.delivered]
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
    storage: LakeStorage
    context: EvaluationContext
    outcomes: list[CheckOutcome] = field(default_factory=list)

    @property
    def curated(self) -> DatasetOutput:
        return output(Zone.CURATED, self.contract.name)

    @property
    def key(self) -> str:
        return self.args.job.delivery.key

    def uri(self, zone: Zone) -> str:
        return self.args.job.layout.partition(zone, self.contract.name, self.args.job.delivery)

    def report(self, *outcomes: CheckOutcome) -> None:
        self.outcomes += outcomes
        self.reporter.checks(self.curated.asset_key, self.outcomes)

    def run(self) -> None:
        layout, delivery = self.args.job.layout, self.args.job.delivery
        raw_key = output(Zone.RAW, self.contract.name).asset_key
        lineage_uri = layout.lineage(Zone.RAW, self.contract.name, delivery)
        lineage = self.storage.read_json(lineage_uri) if self.storage.exists(lineage_uri) else None
        gate, reason = gate_checks(self.contract, lineage, raw_key, self.key)
        self.outcomes += gate
        if reason is not None or lineage is None:
            failed = next(o for o in gate if not o.passed)
            self.reporter.error(
                f"{self.curated.asset_key} {self.key}: {failed.name} failed: {reason}; "
                "nothing written to curated"
            )
            self.report()
            return
        self.curate(lineage)

    def curate(self, raw_lineage: Mapping[str, Any]) -> None:
        raw = self.spark.read.parquet(self.uri(Zone.RAW))
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
        # same plan over the same immutable raw partition, and only when the first pass found
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
        layout, delivery, name = self.args.job.layout, self.args.job.delivery, self.contract.name
        if not self.storage.exists(layout.lineage(Zone.CURATED, name, delivery)):
            reason = f"{self.curated.asset_key} has no committed partition to check"
            rule = rule_of(self.contract, RuleKind.RECONCILIATION)
            self.report(check(rule, False, reason=reason))
            return
        stored_curated = self.spark.read.parquet(self.uri(Zone.CURATED)).count()
        stored_quarantine = (
            self.spark.read.parquet(self.uri(Zone.QUARANTINE)).count()
            if self.storage.exists(layout.lineage(Zone.QUARANTINE, name, delivery))
            else 0
        )
        expected = int(summary["rejected"])
        balance = Balance(
            raw_rows, stored_curated, stored_quarantine, expected, int(summary["collapsed"])
        )
        self.report(
            reconciliation(self.contract, balance, expected_quarantined_rows=expected),
            volume(self.contract, stored_curated, self.previous_delivery_rows()),
        )

    def write(
        self, evaluated: DataFrame, data_columns: Sequence[str], raw_lineage: Mapping[str, Any]
    ) -> None:
        """Write curated while counting every rule, write quarantine, prove the balance."""
        contract, job = self.contract, self.args.job
        writer = PartitionWriter(self.storage, job.layout, job.run_id)
        quarantine_out = output(Zone.QUARANTINE, contract.name)
        observation = Observation(f"rules_{contract.name}")
        observed = evaluated.observe(observation, *rule_metrics(contract, EXAMPLES, as_json=True))
        written_c = write_observed(
            curated_frame(observed, contract, job.run_id),
            writer.staging(self.curated, job.delivery),
            self.curated,
        )
        # Observed values arrive as a dict of Rows; as one Row they convert like a query's.
        summary = Row(**observation.get).asDict(recursive=True)
        quarantine = quarantine_frame(evaluated, contract, data_columns, job.run_id)
        if not int(summary["rejected"]):
            quarantine = self.spark.createDataFrame([], quarantine.schema)
        written_q = write_observed(
            quarantine, writer.staging(quarantine_out, job.delivery), quarantine_out
        )
        self.outcomes += rule_checks(contract, summary)
        self.warn_quarantined(summary)
        balance = Balance(
            int(raw_lineage["rows"]["out"]),
            written_c.rows,
            written_q.rows,
            int(summary["rejected"]),
            int(summary["collapsed"]),
        )
        reconciled = reconciliation(contract, balance)
        self.outcomes += [
            reconciled,
            volume(contract, written_c.rows, self.previous_delivery_rows()),
        ]
        if not reconciled.passed:
            writer.discard(written_c.uri)
            writer.discard(written_q.uri)
            self.reporter.error(
                f"{self.curated.asset_key} {self.key}: reconciliation failed: raw {balance.raw} "
                f"!= curated {balance.curated} + quarantined {balance.quarantined} (of "
                f"{balance.found} found) + collapsed {balance.collapsed}; nothing committed"
            )
            self.report()
            return
        self.commit(writer, raw_lineage, written_c, written_q, balance.collapsed)

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
        layout, delivery, name = self.args.job.layout, self.args.job.delivery, self.contract.name
        study_dir = layout.study_dir(Zone.CURATED, name, delivery.study)
        entries = [s.name for s in self.storage.list(study_dir) if s.is_dir]
        current = delivery_order(delivery.delivery)
        earlier = [d for d in deliveries_in(entries) if delivery_order(d) < current]
        for previous in reversed(earlier):
            uri = layout.lineage(Zone.CURATED, name, Delivery(delivery.study, previous))
            if self.storage.exists(uri):
                return previous, int(self.storage.read_json(uri)["rows"]["out"])
        return None

    def inputs(self, raw_lineage: Mapping[str, Any]) -> list[dict[str, Any]]:
        inputs = [
            {
                "asset": output(Zone.RAW, self.contract.name).asset_key,
                "partition": self.key,
                "uri": self.uri(Zone.RAW),
                "content_hash": raw_lineage.get("content_hash"),
                "run_id": raw_lineage.get("run_id"),
            }
        ]
        if self.contract.references_dm and self.context.dm_lineage is not None:
            inputs.append(dict(self.context.dm_lineage))
        return inputs

    def commit(
        self,
        writer: PartitionWriter,
        raw_lineage: Mapping[str, Any],
        written_c: WrittenData,
        written_q: WrittenData,
        collapsed: int,
    ) -> None:
        """Commit quarantine, then curated (with its lineage record), then report."""
        job, curated = self.args.job, self.curated
        application_id = self.spark.sparkContext.applicationId
        rows = {
            "in": int(raw_lineage["rows"]["out"]),
            "out": written_c.rows,
            "quarantined": written_q.rows,
            "collapsed": collapsed,
        }
        common = {
            "delivery": job.delivery,
            "run_id": job.run_id,
            "application_id": application_id,
            "status": "accepted",
            "inputs": self.inputs(raw_lineage),
            "rows": rows,
            "checks": [o.as_record() for o in self.outcomes],
        }
        quarantine_out = output(Zone.QUARANTINE, self.contract.name)
        quarantine_final = writer.commit(
            quarantine_out,
            job.delivery,
            written_q.uri,
            lineage_record(output=quarantine_out, content_hash=written_q.content_hash, **common),
        )
        schema = self.written_schema()
        final = writer.commit(
            curated,
            job.delivery,
            written_c.uri,
            lineage_record(
                output=curated,
                content_hash=written_c.content_hash,
                quarantine_uri=quarantine_final,
                schema=[{"name": n, "type": t} for n, t, _ in schema],
                **common,
            ),
        )
        self.report_materialization(rows, written_c, final, quarantine_final, common["inputs"])

    def written_schema(self) -> list[tuple[str, str, str | None]]:
        return [(c.name, c.type, c.description or None) for c in self.curated.columns]

    def report_materialization(
        self,
        rows: Mapping[str, int],
        written: WrittenData,
        final: str,
        quarantine_final: str,
        inputs: list[dict[str, Any]],
    ) -> None:
        curated = self.curated
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
                "path": path_value(final),
                "quarantine_path": path_value(quarantine_final),
                "inputs": json_value(inputs),
                "dagster/column_schema": table_schema_value(self.written_schema()),
                "dagster/column_lineage": column_lineage_value(curated),
                "spark_application_id": self.spark.sparkContext.applicationId,
            },
            data_version=written.content_hash,
        )
        self.report()


# ---- the job ------------------------------------------------------------------------------


def dm_reference(spark: SparkSession, storage: LakeStorage, args: CurateArgs) -> EvaluationContext:
    """Subjects of DM in the same delivery's raw zone, for referential integrity."""
    layout, delivery = args.job.layout, args.job.delivery
    raw_dm = output(Zone.RAW, "dm")
    uri = layout.partition(Zone.RAW, raw_dm.name, delivery)
    lineage_uri = layout.lineage(Zone.RAW, raw_dm.name, delivery)

    def unavailable(reason: str) -> EvaluationContext:
        return EvaluationContext(delivery.study, args.today, None, reason)

    if not storage.exists(lineage_uri):
        return unavailable(f"{raw_dm.asset_key} of {delivery.key} has not been materialized")
    lineage = storage.read_json(lineage_uri)
    if lineage["status"] != "accepted":
        return unavailable(f"DM of {delivery.key} was {lineage['status']}")
    dm = spark.read.parquet(uri)
    if "USUBJID" not in dm.columns:
        return unavailable(f"DM of {delivery.key} has no USUBJID column")
    subjects = dm.select(F.trim(F.col("USUBJID")).alias("USUBJID")).where("USUBJID != ''")
    reference = {
        "asset": raw_dm.asset_key,
        "partition": delivery.key,
        "uri": uri,
        "content_hash": lineage.get("content_hash"),
        "run_id": lineage.get("run_id"),
    }
    return EvaluationContext(delivery.study, args.today, subjects, dm_lineage=reference)


def curate(args: CurateArgs, reporter: JobReporter) -> None:
    job = args.job
    spark = build_session(f"clinical-curate-{job.delivery.key}")
    storage = LakeStorage(spark)
    raw_zone = job.layout.zone(Zone.RAW)
    if not storage.exists(raw_zone):
        raise JobError(f"{raw_zone}: raw zone does not exist; materialize the raw assets first")
    context = dm_reference(spark, storage, args)
    for name in args.datasets:
        contract = contract_for(name, job.delivery.study)
        DatasetCuration(spark, args, reporter, contract, storage, context).run()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    run_job(EntryPoint.CURATE, lambda reporter: curate(args, reporter))


if __name__ == "__main__":
    main()
