"""landing -> raw: a faithful, typed Parquet copy of each delivered SDTM file plus provenance.

    spark-submit --py-files spark_jobs.zip ingest.py \
        --lake <lake root> (--study <STUDY> --delivery <DELIVERY> | --deliveries S/D1,S/D2,...) \
        [--datasets dm,ae,...] [--run-id ID] [--checks-only]

Every file is validated whole (structure, encoding, manifest size and sha256, the contract's
required columns) before a row of it is kept. A file that fails is rejected with a one-line
reason, recorded under quarantine/<family>/rejected_files, and left untouched in landing; the
other domains go on. Hidden, temporary and documentation files are skipped with a reason, so
files landed = accepted + rejected + skipped. Steps: read the landing folder, inspect its
files (executors), account for every file, then per dataset the delivery carries write raw
(or, for a rejected domain, an empty partition saying why), commit and report; a domain the
delivery does not carry is skipped and keeps its current data from earlier deliveries.
Several deliveries are ingested one after the other in one application, each committed alone.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from spark_jobs.contracts import DatasetContract, contract_for, domain_of_file, skip_reason
from spark_jobs.contracts.layout import CLINICAL_FAMILY, MANIFEST_NAME, Zone
from spark_jobs.contracts.outputs import (
    CONTRACT_COLUMNS,
    DIRECT_IDENTIFIERS,
    FILES_READABLE,
    DatasetOutput,
    output,
    rejected_files_output,
)
from spark_jobs.contracts.protocol import EntryPoint
from spark_jobs.formats.inspection import FileInspection, Inspected, file_format
from spark_jobs.formats.raw_rows import (
    inspect_files,
    inspect_parquet,
    read_domain_rows,
    union_columns,
)
from spark_jobs.quality import identifiers
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
    json_value,
    table_metadata,
    table_schema_value,
)
from spark_jobs.runtime.session import (
    JobError,
    application_name,
    build_session,
    for_each_dataset,
    for_each_delivery,
    run_job,
)
from spark_jobs.storage.filesystem import FileStatus, LakeStorage
from spark_jobs.storage.lineage import lineage_record
from spark_jobs.storage.tables import Committed, LakeTables, Staged, table_shaped

# Files that document a delivery rather than carry data: kept in landing, not ingested.
DOCUMENT_EXTENSIONS = (".xml", ".pdf", ".md", ".txt", ".html", ".htm", ".docx", ".rtf")


@dataclass(frozen=True)
class IngestArgs:
    job: DeliveryArgs  # the delivery being ingested
    datasets: tuple[str, ...]
    batch: tuple[DeliveryArgs, ...] = ()  # every delivery of the application, when several


def parse_args(argv: Sequence[str] | None = None) -> IngestArgs:
    parser = delivery_parser("ingest.py", __doc__)
    add_datasets_argument(parser)
    ns = parser.parse_args(argv)
    batch = delivery_batch(parser, ns)
    return IngestArgs(batch[0], dataset_names(parser, ns.datasets, ns.family), batch)


# ---- read: the landing folder -------------------------------------------------------------


@dataclass(frozen=True)
class LandingFile:
    status: FileStatus
    dataset: str | None
    problem: str | None  # why it cannot be ingested at all (unknown domain, unsupported type)


@dataclass(frozen=True)
class Landing:
    """A delivery's files sorted by what ingest does with them; the manifest is not counted."""

    data_files: list[LandingFile]
    documents: list[FileStatus]
    skipped: list[tuple[FileStatus, str]]  # with the reason


def classify_landing(listing: Sequence[FileStatus], family: str = CLINICAL_FAMILY) -> Landing:
    """Data files (with their dataset or a problem), documentation and skipped files."""
    landing = Landing([], [], [])
    for status in listing:
        name = status.name
        reason = skip_reason(name)
        if name == MANIFEST_NAME:
            continue
        if reason is not None:
            landing.skipped.append((status, reason))
        elif status.is_dir:
            landing.data_files.append(
                LandingFile(status, None, "unexpected folder inside a delivery")
            )
        elif name.lower().endswith(DOCUMENT_EXTENSIONS):
            landing.documents.append(status)
        else:
            dataset = domain_of_file(name, family)
            landing.data_files.append(LandingFile(status, dataset, _problem_of(name, dataset)))
    return landing


def _problem_of(name: str, dataset: str | None) -> str | None:
    if file_format(name) is None:
        return "unsupported file type (expected .xpt, .csv or .parquet)"
    if dataset is None:
        stem = name.split(".", 1)[0]
        return f"unknown domain {stem.upper()!r}: no dataset contract for this file"
    return None


def read_manifest(storage: LakeStorage, uri: str) -> dict[str, dict[str, Any]] | None:
    if not storage.exists(uri):
        return None
    try:
        manifest = storage.read_json(uri)
        return {f["name"]: f for f in manifest["files"]}
    except (ValueError, KeyError, TypeError) as error:
        raise JobError(f"{uri}: unreadable delivery manifest ({error})") from None


def check_against_manifest(
    inspection: FileInspection, manifest: dict[str, dict[str, Any]] | None
) -> FileInspection:
    """Reject a file whose bytes differ from what the delivery manifest promised."""
    if manifest is None or not inspection.accepted:
        return inspection
    entry = manifest.get(inspection.name)
    if entry is None:
        reason = f"not listed in {MANIFEST_NAME}; added after the delivery was landed"
    elif int(entry.get("size", -1)) != inspection.size:
        reason = (
            f"size {inspection.size} bytes differs from {entry.get('size')} in {MANIFEST_NAME} "
            "(truncated or changed after landing)"
        )
    elif entry.get("sha256") != inspection.sha256:
        reason = f"sha256 differs from {MANIFEST_NAME} (changed after landing)"
    else:
        return inspection
    return replace(inspection, accepted=False, reason=reason)


def missing_from_landing(
    manifest: dict[str, dict[str, Any]],
    listing: Sequence[FileStatus],
    landing: str,
    family: str = CLINICAL_FAMILY,
) -> list[tuple[str, Inspected]]:
    """Files the manifest lists that are no longer in landing, as rejected inspections."""
    present = {s.name for s in listing}
    found = []
    for name in sorted(set(manifest) - present):
        dataset = domain_of_file(name, family)
        if dataset is not None:
            reason = f"listed in {MANIFEST_NAME} but missing from landing"
            inspection = FileInspection(
                name=name,
                uri=f"{landing}/{name}",
                size=0,
                sha256="",
                format=file_format(name) or "unknown",
                accepted=False,
                reason=reason,
            )
            found.append((dataset, Inspected(inspection)))
    return found


# ---- the run ------------------------------------------------------------------------------


@dataclass
class IngestRun:
    """One ingest application: its session, storage and the files it rejected."""

    spark: SparkSession
    args: IngestArgs
    reporter: JobReporter
    storage: LakeStorage = field(init=False)
    tables: LakeTables = field(init=False)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    # Every file of the delivery with what became of it (`account_for_files`).
    files: dict[str, Any] = field(default_factory=dict)
    # sha256 of the delivery manifest read: the first link of every record's chain.
    manifest_sha256: str | None = None
    detected_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )

    def __post_init__(self) -> None:
        self.storage = LakeStorage(self.spark)
        job = self.args.job
        self.tables = LakeTables(self.spark, job.layout, job.run_id)

    @property
    def key(self) -> str:
        return self.args.job.delivery.key

    def reject(self, inspection: FileInspection, dataset: str | None, message: str) -> None:
        """Report a file that cannot be ingested and keep its record for quarantine."""
        self.reporter.error(f"delivery {self.key}: {inspection.name}: {message}")
        self.rejected.append(
            {
                "file": inspection.name,
                "uri": inspection.uri,
                "size": inspection.size,
                "sha256": inspection.sha256 or None,
                "dataset": dataset,
                "reason": inspection.reason or "rejected",
                "partition": self.key,
                "run_id": self.args.job.run_id,
                "detected_at": self.detected_at,
            }
        )

    def record_rejections(self) -> None:
        """One row per rejected file in quarantine.<family>_rejected_files, for the delivery."""
        if not self.rejected or self.args.job.checks_only:
            return
        delivery = self.args.job.delivery
        rejected_files = rejected_files_output(self.args.job.layout.family)
        names = [c.name for c in rejected_files.columns]
        rows = [
            tuple({**r, "study": delivery.study, "delivery": delivery.delivery}[n] for n in names)
            for r in self.rejected
        ]
        schema = ", ".join(f"`{c.name}` {c.type}" for c in rejected_files.columns)
        self.tables.ensure(rejected_files)
        staged = self.tables.stage(
            self.spark.createDataFrame(rows, schema), rejected_files, delivery
        )
        self.tables.publish(staged)


def ingest(args: IngestArgs, reporter: JobReporter) -> None:
    """Every delivery of the run, one after the other, in one Spark application."""
    batch = args.batch or (args.job,)
    spark = build_session(application_name(EntryPoint.INGEST, batch), args.job.layout.root)
    for_each_delivery(
        batch,
        reporter,
        lambda job: ingest_delivery(IngestRun(spark, replace(args, job=job), reporter)),
    )


def ingest_delivery(run: IngestRun) -> None:
    """Read the landing folder, inspect and account for its files, write each dataset."""
    args, job = run.args, run.args.job
    landing = job.layout.landing(job.delivery)
    listing = run.storage.list(landing)
    if not listing:
        raise JobError(f"{landing}: landing folder is missing or empty")
    sorted_files = classify_landing(listing, job.layout.family)
    manifest = read_manifest(run.storage, job.layout.manifest(job.delivery))
    if manifest is not None:
        run.manifest_sha256 = run.storage.sha256(job.layout.manifest(job.delivery))
    by_dataset = inspect_delivery(run, sorted_files.data_files, listing, manifest)
    run.files = account_for_files(sorted_files, by_dataset, args.datasets, manifest)
    report_accounting(run)
    for_each_dataset(
        run.spark, args.datasets, lambda name: ingest_dataset(run, name, by_dataset.get(name, []))
    )
    run.record_rejections()


def inspect_delivery(
    run: IngestRun,
    data_files: Sequence[LandingFile],
    listing: Sequence[FileStatus],
    manifest: dict[str, dict[str, Any]] | None,
) -> dict[str, list[Inspected]]:
    """Every wanted file inspected (on the executors), grouped by dataset."""
    job = run.args.job
    for landing_file in data_files:
        if landing_file.problem:
            status = landing_file.status
            unusable = FileInspection(
                status.name, status.uri, status.size, "", "unknown", False, landing_file.problem
            )
            run.reject(
                unusable,
                landing_file.dataset,
                f"{landing_file.problem}; kept in landing and recorded as rejected",
            )
    wanted = [f for f in data_files if f.problem is None and f.dataset in run.args.datasets]
    inspected = inspect_files(run.spark, [f.status for f in wanted])
    by_dataset: dict[str, list[Inspected]] = defaultdict(list)
    for landing_file, found in zip(wanted, inspected, strict=True):
        assert landing_file.dataset is not None
        checked = check_against_manifest(found.inspection, manifest)
        if checked.format == "parquet" and checked.accepted:
            checked = inspect_parquet(run.spark, checked)
        contract = contract_for(landing_file.dataset, job.delivery.study, job.layout.family)
        checked = require_columns(checked, contract)
        by_dataset[landing_file.dataset].append(replace(found, inspection=checked))
    if manifest is not None:
        landing = job.layout.landing(job.delivery)
        for dataset, missing in missing_from_landing(manifest, listing, landing, job.layout.family):
            if dataset in run.args.datasets:
                by_dataset[dataset].append(missing)
    return by_dataset


def require_columns(inspection: FileInspection, contract: DatasetContract) -> FileInspection:
    """Reject a readable file that lacks a column the contract requires (its key, say)."""
    if not inspection.accepted:
        return inspection
    present = {c.name for c in inspection.columns}
    missing = [c for c in contract.required_columns if c not in present]
    if not missing:
        return inspection
    reason = f"lacks required column(s) {', '.join(missing)}"
    return replace(inspection, accepted=False, reason=reason)


# ---- every file accounted for ------------------------------------------------------------


def account_for_files(
    landing: Landing,
    by_dataset: Mapping[str, Sequence[Inspected]],
    selected: Sequence[str],
    manifest: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What became of every landed file: accepted, rejected or skipped, each with a reason.

    `landed` counts the files the manifest lists and any found beside them; `accounted` is the
    sum of the dispositions and must equal it. Files of datasets this run was not asked for
    are `not_ingested` (none when a whole delivery is materialized).
    """
    accepted: list[str] = []
    rejected: list[dict[str, str]] = []
    skipped = [{"file": status.name, "reason": reason} for status, reason in landing.skipped]
    skipped += [
        {"file": d.name, "reason": "documentation file; kept in landing, not ingested"}
        for d in landing.documents
    ]
    not_ingested: list[str] = []
    for landing_file in landing.data_files:
        name = landing_file.status.name
        if landing_file.problem:
            rejected.append({"file": name, "reason": landing_file.problem})
        elif landing_file.dataset not in selected:
            not_ingested.append(name)
    for found in by_dataset.values():
        for inspection in (f.inspection for f in found):
            if inspection.accepted:
                accepted.append(inspection.name)
            else:
                rejected.append({"file": inspection.name, "reason": inspection.reason or ""})
    names = {s.name for s in (*landing.documents, *(f.status for f in landing.data_files))}
    names |= {status.name for status, _ in landing.skipped} | set(manifest or ())
    return {
        "landed": len(names),
        "accounted": len(accepted) + len(rejected) + len(skipped) + len(not_ingested),
        "accepted": sorted(accepted),
        "rejected": sorted(rejected, key=lambda r: r["file"]),
        "skipped": sorted(skipped, key=lambda r: r["file"]),
        "not_ingested": sorted(not_ingested),
    }


def accounting_line(key: str, files: Mapping[str, Any]) -> str:
    """`delivery K: 9 files landed = 6 accepted + 2 rejected + 1 skipped`."""
    line = (
        f"delivery {key}: {files['landed']} files landed = {len(files['accepted'])} accepted + "
        f"{len(files['rejected'])} rejected + {len(files['skipped'])} skipped"
    )
    if files["not_ingested"]:
        line += f" + {len(files['not_ingested'])} not asked for in this run"
    if files["accounted"] != files["landed"]:
        line += f" (only {files['accounted']} accounted for)"
    return line


def report_accounting(run: IngestRun) -> None:
    for skipped in run.files["skipped"]:
        line = f"delivery {run.key}: {skipped['file']}: skipped: {skipped['reason']}"
        documentation = skipped["reason"].startswith("documentation")
        (run.reporter.info if documentation else run.reporter.warning)(line)
    run.reporter.info(accounting_line(run.key, run.files))


def files_metadata(files: Mapping[str, Any]) -> dict[str, Any]:
    """The accounting as materialization metadata: counts, and every file with its reason."""
    return {
        "files_landed": files["landed"],
        "files_accepted": len(files["accepted"]),
        "files_rejected": len(files["rejected"]),
        "files_skipped": len(files["skipped"]),
        "delivery_files": json_value(files),
    }


# ---- per dataset: write, commit, report ---------------------------------------------------


def dataset_status(dataset: str, key: str, files: Sequence[FileInspection]) -> tuple[str, str]:
    """("accepted" | "absent" | "rejected", reason)."""
    if not files:
        return "absent", f"no {dataset} file in delivery {key}"
    if any(not i.accepted for i in files):
        return "rejected", "; ".join(f"{i.name}: {i.reason}" for i in files if not i.accepted)
    return "accepted", ""


def ingest_dataset(run: IngestRun, dataset: str, found: Sequence[Inspected]) -> None:
    """Write raw/<dataset> for the delivery, or an empty partition saying why there is none."""
    raw = output(Zone.RAW, dataset)
    files = [f.inspection for f in found]
    for inspection in files:
        if not inspection.accepted:
            run.reject(
                inspection,
                dataset,
                f"{inspection.reason}; kept in landing, {raw.asset_key} rejected",
            )
    status, reason = dataset_status(dataset, run.key, files)
    sources = [i.source_record() for i in files]
    if status == "absent":
        # A delivery may carry any subset of domains: the study's current data of this one
        # stays that of the latest earlier delivery that carried it.
        run.reporter.info(f"{raw.asset_key} {run.key}: not in this delivery; skipped")
        return
    if run.args.job.checks_only:
        outcomes = [files_readable(status, reason, sources, checks_only=True)]
        if status == "accepted":
            job = run.args.job
            contract = contract_for(dataset, job.delivery.study, job.layout.family)
            outside = sorted(
                {c.name for i in files for c in i.columns} - set(contract.column_names)
            )
            outcomes += [contract_columns(contract, files), direct_identifiers(outside, [], {})]
        else:
            outcomes += not_evaluated(reason)
        run.reporter.checks(raw.asset_key, outcomes)
    elif status != "accepted":
        commit_without_rows(run, raw, status, reason, sources)
    else:
        write_raw(run, raw, found, sources)


def files_readable(
    status: str, reason: str, sources: Sequence[dict[str, Any]], *, checks_only: bool = False
) -> CheckOutcome:
    """The raw check: could every file of the domain be read? A failure is ERROR severity."""
    accepted = status == "accepted"
    names = [s["name"] for s in sources]
    rejected = [s for s in sources if not s["accepted"]]
    if checks_only:
        metadata = {"reason": reason or None, "rejected_files": rejected, "files": names}
    elif accepted:
        metadata = {"files": names}
    else:
        metadata = {"reason": reason, "rejected_files": rejected}
    return CheckOutcome(FILES_READABLE, accepted, blocking=not accepted, metadata=metadata)


def commit_without_rows(
    run: IngestRun, raw: DatasetOutput, status: str, reason: str, sources: list[dict[str, Any]]
) -> None:
    """An empty partition whose lineage says why the domain has no rows in this delivery."""
    job = run.args.job
    run.tables.ensure(raw)
    empty = run.spark.createDataFrame(
        [], ", ".join(f"`{name}` {type_}" for name, type_ in run.tables.columns(raw))
    )
    staged = run.tables.stage(empty, raw, job.delivery)
    snapshot = run.tables.publish(staged)
    application_id = run.spark.sparkContext.applicationId
    lineage = lineage_record(
        output=raw,
        delivery=job.delivery,
        run_id=job.run_id,
        application_id=application_id,
        status=status,
        snapshot_id=snapshot,
        reason=reason,
        sources=sources,
        rows={"in": 0, "out": 0},
        content_hash=None,
        data_hash=None,
        schema=[],
        delivery_files=run.files,
        manifest_sha256=run.manifest_sha256,
    )
    run.tables.record(Committed(raw, job.delivery, snapshot, lineage))
    run.reporter.warning(f"{raw.asset_key} {run.key}: {status}: {reason}")
    run.reporter.materialization(
        raw.asset_key,
        {
            "status": status,
            "reason": reason,
            "dagster/row_count": 0,
            "source_files": json_value(sources),
            **files_metadata(run.files),
            **table_metadata(raw, job, snapshot),
            "spark_application_id": application_id,
        },
    )
    run.reporter.checks(
        raw.asset_key, [files_readable(status, reason, sources), *not_evaluated(reason)]
    )


def not_evaluated(reason: str) -> list[CheckOutcome]:
    """The checks of what arrived, for a domain whose files could not be used at all."""
    metadata = {"evaluated": False, "reason": f"not evaluated: the domain was rejected ({reason})"}
    return [
        CheckOutcome(name, True, blocking=False, metadata=metadata)
        for name in (CONTRACT_COLUMNS, DIRECT_IDENTIFIERS)
    ]


def write_raw(
    run: IngestRun, raw: DatasetOutput, found: Sequence[Inspected], sources: list[dict[str, Any]]
) -> None:
    """Every row of the domain's files, provenance added, checked against the files' counts."""
    job = run.args.job
    files = [f.inspection for f in found]
    columns = union_columns(files, raw)
    rows_in = sum(i.rows or 0 for i in files)
    frame = read_domain_rows(run.spark, found, columns, job.delivery, job.run_id)
    contract = contract_for(raw.name, job.delivery.study, job.layout.family)
    # Identifiers hide in columns outside the contract; their values are counted as written.
    outside = [c.name for c in columns if c.name not in contract.column_names]
    text = [
        f.name for f in frame.schema.fields if f.name in outside and f.dataType == T.StringType()
    ]
    staged = run.tables.stage(
        table_shaped(frame, raw, run.tables, job.delivery),
        raw,
        job.delivery,
        extra_metrics=identifiers.value_metrics(text),
    )
    if staged.rows != rows_in:
        run.tables.discard(staged)
        raise JobError(
            f"{raw.asset_key} {run.key}: wrote {staged.rows} rows but the files hold "
            f"{rows_in}; nothing committed"
        )
    outcomes = [
        files_readable("accepted", "", sources),
        contract_columns(contract, files),
        direct_identifiers(outside, text, staged.extra),
    ]
    labels = {c.name: c.label or None for c in columns}
    schema = [(f.name, f.dataType.simpleString(), labels.get(f.name)) for f in frame.schema.fields]
    commit_raw(run, raw, staged, sources, schema, outcomes)


def commit_raw(
    run: IngestRun,
    raw: DatasetOutput,
    staged: Staged,
    sources: list[dict[str, Any]],
    schema: list[tuple[str, str, str | None]],
    outcomes: Sequence[CheckOutcome],
) -> None:
    """Publish the staged rows, record their lineage, and report them with the checks."""
    job = run.args.job
    snapshot = run.tables.publish(staged)
    application_id = run.spark.sparkContext.applicationId
    rows = {"in": sum(s.get("rows") or 0 for s in sources), "out": staged.rows}
    lineage = lineage_record(
        output=raw,
        delivery=job.delivery,
        run_id=job.run_id,
        application_id=application_id,
        status="accepted",
        snapshot_id=snapshot,
        sources=sources,
        rows=rows,
        content_hash=staged.content_hash,
        data_hash=staged.data_hash,
        schema=[{"name": n, "type": t} for n, t, _ in schema],
        checks=[o.as_record() for o in outcomes],
        delivery_files=run.files,
        manifest_sha256=run.manifest_sha256,
    )
    run.tables.record(Committed(raw, job.delivery, snapshot, lineage))
    run.reporter.info(
        f"{raw.asset_key} {run.key}: {staged.rows} rows from {len(sources)} file(s) -> "
        f"{raw.table} snapshot {snapshot}"
    )
    for outcome in outcomes:
        if not outcome.passed:
            run.reporter.warning(f"{raw.asset_key} {run.key}: {outcome.metadata['summary']}")
    run.reporter.materialization(
        raw.asset_key,
        {
            "status": "accepted",
            "dagster/row_count": staged.rows,
            "rows_in": rows["in"],
            "rows_out": staged.rows,
            "content_hash": staged.content_hash,
            "data_hash": staged.data_hash,
            "source_files": json_value(sources),
            **files_metadata(run.files),
            "dagster/column_schema": table_schema_value(schema),
            **table_metadata(raw, job, snapshot),
            "spark_application_id": application_id,
        },
        data_version=staged.content_hash,
    )
    run.reporter.checks(raw.asset_key, outcomes)


def contract_columns(contract: DatasetContract, files: Sequence[FileInspection]) -> CheckOutcome:
    """Warn, per file, about contract columns the file lacks (curated holds nulls for them)."""
    missing = {
        i.name: [c for c in contract.column_names if c not in {s.name for s in i.columns}]
        for i in files
    }
    missing = {name: columns for name, columns in missing.items() if columns}
    summary = "; ".join(
        f"{name} lacks contract column(s) {', '.join(columns)}, curated with nulls"
        for name, columns in missing.items()
    )
    return CheckOutcome(
        CONTRACT_COLUMNS,
        not missing,
        blocking=False,
        metadata={"missing_columns": missing, "summary": summary or None},
    )


def direct_identifiers(
    outside: Sequence[str], text: Sequence[str], metrics: Mapping[str, Any]
) -> CheckOutcome:
    """Warn about delivered columns that look like direct identifiers, by name or by value."""
    found = {**identifiers.by_value(text, metrics), **identifiers.by_name(outside)}
    summary = (
        "columns that look like direct identifiers, kept in raw only: "
        + ", ".join(f"{name} ({kind})" for name, kind in sorted(found.items()))
        if found
        else None
    )
    return CheckOutcome(
        DIRECT_IDENTIFIERS,
        not found,
        blocking=False,
        metadata={"identifier_columns": dict(sorted(found.items())), "summary": summary},
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    run_job(EntryPoint.INGEST, lambda reporter: ingest(args, reporter))


if __name__ == "__main__":
    main()
