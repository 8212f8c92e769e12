"""raw -> curated + quarantine: conformed SDTM, every rule of the contract evaluated in one pass.

    spark-submit --py-files spark_jobs.zip curate.py \
        --input <lake>/raw/clinical --output <lake>/curated/clinical \
        --quarantine <lake>/quarantine/clinical \
        --study <STUDY> --delivery <DELIVERY> [--datasets dm,ae,...] [--run-id ID] [--checks-only]

Per dataset: type and normalise the raw rows, evaluate the contract's rules, collapse exact
duplicates, write rows that break a quarantining rule to quarantine/ with all their reasons and
the rest to curated/, prove `raw = curated + quarantined + collapsed`, and only then commit.
With --checks-only nothing is written: the rules are re-evaluated and compared with what the
committed partitions hold (the UI's "execute checks" on a partition).
"""

from __future__ import annotations

import argparse
import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, Observation, Row, SparkSession
from pyspark.sql import functions as F

from spark_jobs.contracts import (
    SDTM_CONTRACTS,
    DatasetContract,
    Effect,
    Rule,
    RuleKind,
    contract_for,
)
from spark_jobs.contracts.layout import (
    LINEAGE_NAME,
    Delivery,
    PartitionKeyError,
    delivery_order,
)
from spark_jobs.quality.conform import date_column, precision_column, raw_name
from spark_jobs.quality.evaluate import (
    EvaluationContext,
    evaluate,
    examples_column,
    key_text,
    rejected_condition,
    row_rules,
    rule_metrics,
)
from spark_jobs.runtime.reporting import JobReporter, json_value, path_value, table_schema_value
from spark_jobs.runtime.session import JobError, build_session, run_job
from spark_jobs.storage.filesystem import LakeStorage
from spark_jobs.storage.partitions import (
    PartitionWriter,
    WrittenData,
    lineage_record,
    write_observed,
)

PROVENANCE = ("_source_uri", "_source_row", "_source_sha256", "_delivery", "_ingested_run_id")
EXAMPLES = 5


@dataclass(frozen=True)
class CurateArgs:
    input: str
    output: str
    quarantine: str
    delivery: Delivery
    datasets: tuple[str, ...]
    run_id: str
    today: dt.date
    checks_only: bool


def parse_args(argv: Sequence[str] | None = None) -> CurateArgs:
    parser = argparse.ArgumentParser(prog="curate.py", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--input", required=True, help="raw zone root of the source family")
    parser.add_argument("--output", required=True, help="curated zone root")
    parser.add_argument("--quarantine", required=True, help="quarantine zone root")
    parser.add_argument("--study", required=True)
    parser.add_argument("--delivery", required=True)
    parser.add_argument("--datasets", default=",".join(c.name for c in SDTM_CONTRACTS))
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--today", default=None, help="date for the future-date rule (UTC today)")
    parser.add_argument("--checks-only", action="store_true")
    ns = parser.parse_args(argv)
    known = [c.name for c in SDTM_CONTRACTS]
    datasets = tuple(d.strip().lower() for d in ns.datasets.split(",") if d.strip())
    unknown = sorted(set(datasets) - set(known))
    if unknown:
        parser.error(f"unknown datasets {unknown}; known: {known}")
    try:
        delivery = Delivery(ns.study, ns.delivery)
    except PartitionKeyError as error:
        parser.error(str(error))
    return CurateArgs(
        input=ns.input.rstrip("/"),
        output=ns.output.rstrip("/"),
        quarantine=ns.quarantine.rstrip("/"),
        delivery=delivery,
        # DM first: the other domains check their subjects against it.
        datasets=tuple(sorted(datasets, key=known.index)),
        run_id=ns.run_id or uuid.uuid4().hex,
        today=dt.date.fromisoformat(ns.today) if ns.today else dt.datetime.now(dt.UTC).date(),
        checks_only=ns.checks_only,
    )


@dataclass
class CheckResult:
    rule: Rule
    passed: bool
    metadata: dict[str, Any]

    def as_record(self) -> dict[str, Any]:
        return {
            "check": self.rule.name,
            "passed": self.passed,
            "effect": self.rule.effect.value,
            "blocking": self.rule.blocking,
            "metadata": self.metadata,
        }


class DatasetCurator:
    """Curates one dataset of one delivery and reports what it did."""

    def __init__(
        self,
        spark: SparkSession,
        args: CurateArgs,
        reporter: JobReporter,
        contract: DatasetContract,
    ) -> None:
        self.spark = spark
        self.args = args
        self.reporter = reporter
        self.contract = contract
        self.storage = LakeStorage(spark)
        self.writer = PartitionWriter(self.storage, args.run_id)
        self.asset_key = f"curated_{contract.name}"
        self.raw_uri = f"{args.input}/{contract.name}/{args.delivery.hive_path}"
        self.results: list[CheckResult] = []

    # ---- reporting -------------------------------------------------------------------------
    def result(self, kind: RuleKind, passed: bool, **metadata: Any) -> CheckResult:
        rule = self.contract.rules_of(kind)[0]
        result = CheckResult(rule, passed, {"effect": rule.effect.value, **metadata})
        self.results.append(result)
        return result

    def report_checks(self) -> None:
        for result in self.results:
            meta = {
                k: (json_value(v) if isinstance(v, (list, dict)) else v)
                for k, v in result.metadata.items()
            }
            meta["description"] = result.rule.description
            self.reporter.check(
                self.asset_key,
                result.rule.name,
                result.passed,
                blocking_severity=result.rule.blocking and not result.passed,
                metadata=meta,
            )

    def reject(self, kind: RuleKind, reason: str, **metadata: Any) -> None:
        """A file-level failure: nothing of this dataset reaches curated for this delivery."""
        self.result(kind, False, reason=reason, **metadata)
        self.reporter.error(
            f"{self.asset_key} {self.args.delivery.key}: {kind.value} failed: "
            f"{reason}; nothing written to curated"
        )
        self.report_checks()

    # ---- inputs ----------------------------------------------------------------------------
    def raw_lineage(self) -> dict[str, Any] | None:
        uri = f"{self.raw_uri}/{LINEAGE_NAME}"
        return self.storage.read_json(uri) if self.storage.exists(uri) else None

    def run(self, context: EvaluationContext) -> None:
        lineage = self.raw_lineage()
        if lineage is None:
            self.reject(
                RuleKind.FILES_READABLE,
                f"raw_{self.contract.name} has not been materialized for {self.args.delivery.key}",
            )
            return
        if lineage["status"] != "accepted":
            self.reject(
                RuleKind.FILES_READABLE,
                lineage.get("reason") or f"raw {lineage['status']}",
                rejected_files=[s for s in lineage.get("sources", []) if not s.get("accepted")],
            )
            return
        self.result(
            RuleKind.FILES_READABLE, True, files=[s["name"] for s in lineage.get("sources", [])]
        )
        missing = {
            s["name"]: sorted(set(self.contract.required_columns) - set(s.get("columns", [])))
            for s in lineage.get("sources", [])
        }
        missing = {name: cols for name, cols in missing.items() if cols}
        if missing:
            reason = "; ".join(
                f"{name} lacks required column(s) {', '.join(cols)}"
                for name, cols in missing.items()
            )
            self.reject(RuleKind.REQUIRED_COLUMNS, reason, missing=missing)
            return
        self.result(RuleKind.REQUIRED_COLUMNS, True, required=list(self.contract.required_columns))
        self.curate(lineage, context)

    # ---- the pass --------------------------------------------------------------------------
    def curate(self, raw_lineage: Mapping[str, Any], context: EvaluationContext) -> None:
        contract = self.contract
        raw = self.spark.read.parquet(self.raw_uri)
        data_columns = [c for c in raw.columns if not c.startswith("_")]
        source_types = {
            f.name: f.dataType.simpleString() for f in raw.schema.fields if f.name in data_columns
        }
        unknown = [c for c in data_columns if c not in contract.column_names]
        self.result(RuleKind.SCHEMA_DRIFT, not unknown, unknown_columns=unknown)
        if unknown:
            self.reporter.warning(
                f"{self.asset_key} {self.args.delivery.key}: columns outside "
                f"the contract kept in raw only: {', '.join(unknown)}"
            )

        # Nothing is cached: the pass that writes curated also counts every rule (observed
        # metrics). Rows to quarantine are rare, so they are written by a second run of the same
        # plan over the same immutable raw partition, and only when the first pass found any;
        # reconciliation proves that the two passes agree.
        evaluated = evaluate(raw, contract, source_types, context)
        self._curate_evaluated(evaluated, raw_lineage, data_columns, context)

    def _curate_evaluated(
        self,
        evaluated: DataFrame,
        raw_lineage: Mapping[str, Any],
        data_columns: Sequence[str],
        context: EvaluationContext,
    ) -> None:
        """Write curated while counting every rule, write quarantine, prove the balance, commit."""
        contract, args = self.contract, self.args
        raw_rows = int(raw_lineage["rows"]["out"])
        metrics = rule_metrics(contract, EXAMPLES)
        rejected = F.expr(rejected_condition(contract))
        run_column = F.lit(args.run_id).alias("_curated_run_id")
        if args.checks_only:
            row = evaluated.agg(*metrics).first()
            assert row is not None
            summary = row.asDict(recursive=True)
            self._rule_results(summary)
            self._recheck_committed(raw_rows, summary)
            return

        quarantine = evaluated.filter(rejected).select(
            *[F.col(raw_name(c)).alias(c) for c in data_columns],
            F.expr(key_text(contract)).alias("_natural_key"),
            *PROVENANCE,
            "_reject_reasons",
            "_reject_details",
            "_flags",
            "_flag_details",
            "_duplicates_collapsed",
            run_column,
        )
        curated_columns: list[str] = []
        for column in contract.columns:
            curated_columns.append(column.name)
            if column.is_datetime:
                curated_columns += [date_column(column.name), precision_column(column.name)]

        observation = Observation(f"rules_{contract.name}")
        curated = (
            evaluated.observe(observation, *metrics)
            .filter(~rejected)
            .select(
                *curated_columns,
                "_flags",
                "_flag_details",
                "_duplicates_collapsed",
                *PROVENANCE,
                run_column,
            )
        )
        curated_dataset = f"{args.output}/{contract.name}"
        quarantine_dataset = f"{args.quarantine}/{contract.name}"
        curated_staging = self.writer.staging_uri(curated_dataset, args.delivery)
        quarantine_staging = self.writer.staging_uri(quarantine_dataset, args.delivery)
        written_c = write_observed(curated, curated_staging, self.asset_key)
        # Observed values arrive as a dict of Rows; as one Row they convert like a query's.
        summary = Row(**observation.get).asDict(recursive=True)
        to_quarantine = int(summary["rejected"])
        if not to_quarantine:
            quarantine = self.spark.createDataFrame([], quarantine.schema)
        written_q = write_observed(quarantine, quarantine_staging, f"quarantine_{contract.name}")
        collapsed = int(summary["collapsed"])
        self._rule_results(summary)

        balanced = (
            raw_rows == written_c.rows + written_q.rows + collapsed
            and written_q.rows == to_quarantine
        )
        self.result(
            RuleKind.RECONCILIATION,
            balanced,
            raw_rows=raw_rows,
            curated_rows=written_c.rows,
            quarantined_rows=written_q.rows,
            collapsed_duplicates=collapsed,
        )
        self._volume_check(written_c.rows)
        if not balanced:
            self.writer.discard(curated_staging)
            self.writer.discard(quarantine_staging)
            self.reporter.error(
                f"{self.asset_key} {args.delivery.key}: reconciliation failed: raw {raw_rows} != "
                f"curated {written_c.rows} + quarantined {written_q.rows} (of {to_quarantine} "
                f"found) + collapsed {collapsed}; nothing committed"
            )
            self.report_checks()
            return
        self._commit(
            raw_lineage,
            context,
            written_c,
            written_q,
            curated_dataset,
            quarantine_dataset,
            collapsed,
            curated,
        )

    def _rule_results(self, summary: Mapping[str, Any]) -> None:
        """One check result per rule, from the metrics of the pass (see `rule_metrics`)."""
        rows, collapsed = int(summary["rows"]), int(summary["collapsed"])
        collapse_rule = self.contract.rules_of(RuleKind.EXACT_DUPLICATES)[0]
        self.result(
            RuleKind.EXACT_DUPLICATES,
            collapsed == 0 or collapse_rule.effect is Effect.OFF,
            collapsed_rows=collapsed,
            rows_kept=rows,
        )
        for rule in row_rules(self.contract):
            failing = int(summary[rule.name] or 0)
            sample = sorted(summary[examples_column(rule.name)] or [], key=lambda e: e["key"])
            passed = failing == 0 or rule.effect is Effect.FLAG
            self.results.append(
                CheckResult(
                    rule,
                    passed,
                    {
                        "effect": rule.effect.value,
                        "failing_rows": failing,
                        "failing_fraction": round(failing / rows, 6) if rows else 0.0,
                        "examples": [e["key"] for e in sample],
                        "example_details": [d for e in sample for d in e["details"]][:EXAMPLES],
                    },
                )
            )
            if failing and rule.effect is Effect.QUARANTINE:
                self.reporter.warning(
                    f"{self.asset_key} {self.args.delivery.key}: {failing} "
                    f"row(s) quarantined by {rule.name}"
                )

    def _volume_check(self, rows: int) -> None:
        previous = self._previous_delivery_rows()
        if previous is None:
            self.result(
                RuleKind.VOLUME,
                True,
                rows=rows,
                previous_rows=None,
                note="no previous delivery of this study",
            )
            return
        delivery, previous_rows = previous
        change = (rows - previous_rows) / previous_rows if previous_rows else float(rows > 0)
        limit = self.contract.volume_change_limit
        self.result(
            RuleKind.VOLUME,
            abs(change) <= limit,
            rows=rows,
            previous_delivery=delivery,
            previous_rows=previous_rows,
            change_fraction=round(change, 6),
            limit=limit,
        )

    def _previous_delivery_rows(self) -> tuple[str, int] | None:
        study_dir = f"{self.args.output}/{self.contract.name}/study={self.args.delivery.study}"
        current = delivery_order(self.args.delivery.delivery)
        earlier = sorted(
            (
                s.name.removeprefix("delivery=")
                for s in self.storage.list(study_dir)
                if s.is_dir
                and s.name.startswith("delivery=")
                and delivery_order(s.name.removeprefix("delivery=")) < current
            ),
            key=delivery_order,
        )
        for delivery in reversed(earlier):
            uri = f"{study_dir}/delivery={delivery}/{LINEAGE_NAME}"
            if self.storage.exists(uri):
                lineage = self.storage.read_json(uri)
                return delivery, int(lineage["rows"]["out"])
        return None

    def _recheck_committed(self, raw_rows: int, summary: Mapping[str, Any]) -> None:
        """Checks-only run: compare a fresh evaluation with the committed partitions."""
        args, name = self.args, self.contract.name
        curated_uri = f"{args.output}/{name}/{args.delivery.hive_path}"
        quarantine_uri = f"{args.quarantine}/{name}/{args.delivery.hive_path}"
        if not self.storage.exists(f"{curated_uri}/{LINEAGE_NAME}"):
            self.result(
                RuleKind.RECONCILIATION,
                False,
                reason=f"{self.asset_key} has no committed partition to check",
            )
        else:
            stored_curated = self.spark.read.parquet(curated_uri).count()
            stored_quarantine = (
                self.spark.read.parquet(quarantine_uri).count()
                if self.storage.exists(f"{quarantine_uri}/{LINEAGE_NAME}")
                else 0
            )
            collapsed, expected_quarantine = int(summary["collapsed"]), int(summary["rejected"])
            balanced = (
                raw_rows == stored_curated + stored_quarantine + collapsed
                and stored_quarantine == expected_quarantine
            )
            self.result(
                RuleKind.RECONCILIATION,
                balanced,
                raw_rows=raw_rows,
                curated_rows=stored_curated,
                quarantined_rows=stored_quarantine,
                collapsed_duplicates=collapsed,
                expected_quarantined_rows=expected_quarantine,
            )
            self._volume_check(stored_curated)
        self.report_checks()

    def _commit(
        self,
        raw_lineage: Mapping[str, Any],
        context: EvaluationContext,
        written_c: WrittenData,
        written_q: WrittenData,
        curated_dataset: str,
        quarantine_dataset: str,
        collapsed: int,
        curated: DataFrame,
    ) -> None:
        args, contract = self.args, self.contract
        application_id = self.spark.sparkContext.applicationId
        inputs = [
            {
                "asset": f"raw_{contract.name}",
                "partition": args.delivery.key,
                "uri": self.raw_uri,
                "content_hash": raw_lineage.get("content_hash"),
                "run_id": raw_lineage.get("run_id"),
            }
        ]
        if contract.references_dm and context.dm_lineage is not None:
            inputs.append(dict(context.dm_lineage))
        rows = {
            "in": int(raw_lineage["rows"]["out"]),
            "out": written_c.rows,
            "quarantined": written_q.rows,
            "collapsed": collapsed,
        }
        checks = [r.as_record() for r in self.results]
        common = {
            "delivery": args.delivery,
            "run_id": args.run_id,
            "application_id": application_id,
            "status": "accepted",
            "inputs": inputs,
            "rows": rows,
            "checks": checks,
        }
        quarantine_final = self.writer.commit(
            quarantine_dataset,
            args.delivery,
            f"{written_q.uri}",
            lineage_record(
                dataset=f"quarantine_{contract.name}",
                zone="quarantine",
                content_hash=written_q.content_hash,
                **common,
            ),
        )
        labels = {c.name: c.label for c in contract.columns}
        schema = [
            (f.name, f.dataType.simpleString(), labels.get(f.name)) for f in curated.schema.fields
        ]
        final = self.writer.commit(
            curated_dataset,
            args.delivery,
            written_c.uri,
            lineage_record(
                dataset=self.asset_key,
                zone="curated",
                content_hash=written_c.content_hash,
                quarantine_uri=quarantine_final,
                schema=[{"name": n, "type": t} for n, t, _ in schema],
                **common,
            ),
        )
        self.reporter.info(
            f"{self.asset_key} {args.delivery.key}: {rows['in']} raw -> {written_c.rows} "
            f"curated, {written_q.rows} quarantined, {collapsed} duplicates collapsed"
        )
        self.reporter.materialization(
            self.asset_key,
            {
                "status": "accepted",
                "dagster/row_count": written_c.rows,
                "rows_in": rows["in"],
                "rows_out": written_c.rows,
                "rows_quarantined": written_q.rows,
                "duplicates_collapsed": collapsed,
                "content_hash": written_c.content_hash,
                "path": path_value(final),
                "quarantine_path": path_value(quarantine_final),
                "inputs": json_value(inputs),
                "dagster/column_schema": table_schema_value(schema),
                "dagster/column_lineage": {
                    "type": "table_column_lineage",
                    "raw_value": {
                        "deps_by_column": {
                            c.name: [{"asset_key": f"raw_{contract.name}", "column_name": c.name}]
                            for c in contract.columns
                        }
                    },
                },
                "spark_application_id": application_id,
            },
            data_version=written_c.content_hash,
        )
        self.report_checks()


def dm_reference(spark: SparkSession, storage: LakeStorage, args: CurateArgs) -> EvaluationContext:
    """Subjects of DM in the same delivery's raw zone, for referential integrity."""
    uri = f"{args.input}/dm/{args.delivery.hive_path}"
    lineage_uri = f"{uri}/{LINEAGE_NAME}"

    def unavailable(reason: str) -> EvaluationContext:
        return EvaluationContext(args.delivery.study, args.today, None, reason)

    if not storage.exists(lineage_uri):
        return unavailable(f"raw_dm of {args.delivery.key} has not been materialized")
    lineage = storage.read_json(lineage_uri)
    if lineage["status"] != "accepted":
        return unavailable(f"DM of {args.delivery.key} was {lineage['status']}")
    dm = spark.read.parquet(uri)
    if "USUBJID" not in dm.columns:
        return unavailable(f"DM of {args.delivery.key} has no USUBJID column")
    subjects = dm.select(F.trim(F.col("USUBJID")).alias("USUBJID")).where("USUBJID != ''")
    reference = {
        "asset": "raw_dm",
        "partition": args.delivery.key,
        "uri": uri,
        "content_hash": lineage.get("content_hash"),
        "run_id": lineage.get("run_id"),
    }
    return EvaluationContext(args.delivery.study, args.today, subjects, dm_lineage=reference)


def curate(args: CurateArgs, reporter: JobReporter) -> None:
    spark = build_session(f"clinical-curate-{args.delivery.key}")
    storage = LakeStorage(spark)
    if not storage.exists(args.input):
        raise JobError(f"{args.input}: raw zone does not exist; materialize the raw assets first")
    context = dm_reference(spark, storage, args)
    for name in args.datasets:
        contract = contract_for(name, args.delivery.study)
        DatasetCurator(spark, args, reporter, contract).run(context)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    run_job("curate", lambda reporter: curate(args, reporter))


if __name__ == "__main__":
    main()
