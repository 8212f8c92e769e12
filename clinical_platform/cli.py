"""`clinical-platform`: land, materialize, backfill, generate, demo, dossier.

Every failure a user can cause ends in one line on stderr naming what was wrong, and a
non-zero exit status; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import dagster as dg
from tqdm import tqdm

from clinical_platform import settings
from clinical_platform.definitions import build_definitions
from clinical_platform.demo import run_demo
from clinical_platform.emr_cli import add_emr_commands
from clinical_platform.generators.sdtm import generate_sdtm
from clinical_platform.lake import LandingError, land_delivery
from clinical_platform.lineage.columns import (
    ColumnLineageError,
    column_lineage_data,
    render_column_lineage,
    trace_column,
)
from clinical_platform.lineage.dossier import asset_dossier, render_dossier
from clinical_platform.lineage.html import render_html
from clinical_platform.lineage.verify import verify_delivery
from clinical_platform.runs import (
    BackfillOutcome,
    MaterializeOutcome,
    SelectionError,
    backfill_deliveries,
    deliveries_between,
    delivery_assets,
    local_instance,
    materialize_delivery,
    register_delivery,
    select_assets,
)
from clinical_platform.spark_commands import SparkCommandError, run_spark_command
from spark_jobs.contracts import FAMILY_CONTRACTS
from spark_jobs.contracts.layout import (
    CLINICAL_FAMILY,
    MANIFEST_NAME,
    Delivery,
    LakeLayout,
    PartitionKeyError,
    Zone,
    local_path,
)
from spark_jobs.contracts.outputs import (
    CURATED_OUTPUTS,
    RAW_OUTPUTS,
    asset_outputs,
)
from spark_jobs.contracts.protocol import EntryPoint

if TYPE_CHECKING:  # pyarrow and numpy are imported only to generate data
    from clinical_platform.generators.streamed import GeneratedDelivery

EXIT_FAILED = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A one-line, user-facing reason a command could not do its work."""


def _delivery(study: str, delivery: str) -> Delivery:
    try:
        return Delivery(study, delivery)
    except PartitionKeyError as error:
        raise CommandError(str(error)) from None


def _layout(lake: str | None, family: str = CLINICAL_FAMILY) -> LakeLayout:
    return LakeLayout(lake or settings.lake_uri(), family=family)


def _add_family(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--family",
        choices=sorted(FAMILY_CONTRACTS),
        default=CLINICAL_FAMILY,
        help="source family of the delivery (default: clinical)",
    )


def cmd_land(args: argparse.Namespace) -> int:
    delivery = _delivery(args.study, args.delivery)
    layout = _layout(args.lake, args.family)
    try:
        result = land_delivery(
            Path(args.folder), delivery, layout, allow_duplicate=args.allow_duplicate
        )
    except LandingError as error:
        raise CommandError(str(error)) from None
    registered = register_delivery(local_instance(), delivery, args.family)
    state = "already landed (same files)" if result.already_landed else "landed"
    print(f"{delivery.key}: {state}, {len(result.files)} files -> {result.uri}")
    if result.duplicate_of is not None:
        print(
            f"{delivery.key}: duplicate of {result.duplicate_of.key} (the same files, byte for "
            f"byte); recorded as duplicate_of in its {MANIFEST_NAME}"
        )
    for landed in result.files:
        print(f"  {landed.name:<14} {landed.size:>10} bytes  sha256 {landed.sha256}")
    print(
        f"partition {delivery.key} {'registered' if registered else 'already registered'} "
        f"in {settings.dagster_home()}"
    )
    return 0


def cmd_materialize(args: argparse.Namespace) -> int:
    delivery = _delivery(args.study, args.delivery)
    layout = _layout(args.lake, args.family)
    defs = build_definitions(lake_uri=layout.root)
    if layout.root.startswith("file:") and not Path(local_path(layout.landing(delivery))).is_dir():
        raise CommandError(
            f"delivery {delivery.key} is not landed in {layout.root}; "
            "run clinical-platform land first"
        )
    patterns = [p.strip() for p in (args.select or "").split(",") if p.strip()]
    try:
        selection = select_assets(defs, patterns, args.family)
    except SelectionError as error:
        raise CommandError(str(error)) from None
    if args.checks_only:
        outcome = materialize_delivery(
            defs, delivery, local_instance(), checks_only=True, family=args.family
        )
        failed = sorted(name for name, passed in outcome.checks.items() if not passed)
        print(f"{len(outcome.checks)} checks of {delivery.key} evaluated, {len(failed)} failed")
        for name in failed:
            print(f"  failed: {name}")
        print(f"run {outcome.run_id}: {'succeeded' if outcome.success else 'failed'}")
        if not outcome.success:
            raise CommandError(f"checks of {delivery.key} failed: {outcome.cause}")
        return 0
    selection = carried_selection(layout, delivery, selection, bool(patterns))
    outcome = materialize_delivery(defs, delivery, local_instance(), selection, family=args.family)
    print_outcome(outcome, [k.to_user_string() for k in selection])
    if not outcome.success:
        raise CommandError(f"materialize {delivery.key} failed: {outcome.cause}")
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    layout = _layout(args.lake, args.family)
    first = _delivery(args.study, args.first) if args.first else None
    last = _delivery(args.study, args.last) if args.last else None
    if first and last and last < first:
        raise CommandError(f"--to {last.delivery} is before --from {first.delivery}")
    deliveries = deliveries_between(layout, args.study, first, last)
    if not deliveries:
        span = f" from {args.first or 'the first'} to {args.last or 'the last'}"
        raise CommandError(
            f"no delivery of {args.study}{span if first or last else ''} is landed in "
            f"{layout.root}; land them first (clinical-platform land)"
        )
    defs = build_definitions(lake_uri=layout.root)
    patterns = [p.strip() for value in args.select or [] for p in value.split(",") if p.strip()]
    try:
        selection = select_assets(defs, patterns, args.family)
    except SelectionError as error:
        raise CommandError(str(error)) from None
    outcome = backfill_deliveries(defs, layout, deliveries, local_instance(), selection)
    print_backfill(outcome)
    if not outcome.success:
        failed = [d for d in outcome.deliveries if not d.success]
        why = (
            f"{len(failed)} of {len(outcome.deliveries)} deliveries failed"
            if failed
            else (outcome.problems or ["a run failed; see it in the Dagster UI"])[0]
        )
        raise CommandError(f"backfill of {args.study}: {why}")
    return 0


def print_backfill(outcome: BackfillOutcome) -> None:
    """One line per delivery with its outcome, then the runs."""
    for delivery in outcome.deliveries:
        print(delivery.line)
    for problem in outcome.problems:
        print(f"  ! {problem}", file=sys.stderr)
    for run_id, succeeded in outcome.runs:
        print(f"run {run_id}: {'succeeded' if succeeded else 'failed'}")


DATASET_OF_ASSET = {o.asset_key: o.name for o in (*RAW_OUTPUTS, *CURATED_OUTPUTS)}


def carried_selection(
    layout: LakeLayout, delivery: Delivery, selection: list[dg.AssetKey], explicit: bool
) -> list[dg.AssetKey]:
    """The selected assets of the datasets the delivery carries; the others are skipped."""
    carried = delivery_assets(layout, delivery)
    if carried is None:
        return selection
    chosen = [k for k in selection if k in carried]
    left = [k.to_user_string() for k in selection if k not in carried]
    if not chosen:
        raise CommandError(
            f"delivery {delivery.key} carries no file for the selected assets "
            f"({', '.join(left)}); nothing to materialize"
        )
    domains = sorted({DATASET_OF_ASSET[k].upper() for k in left if k in DATASET_OF_ASSET})
    if domains:  # the landing asset is never "carried"; it is not a dataset left out
        print(
            f"delivery {delivery.key} carries no {', '.join(domains)} file: not materialized "
            "(their current data stays that of earlier deliveries)"
        )
    return chosen


def print_outcome(outcome: MaterializeOutcome, selected: Sequence[str]) -> None:
    width = max((len(name) for name in selected), default=10)
    print(f"{'asset':<{width}}  {'rows':>8}  status")
    for name in selected:
        rows = outcome.rows.get(name)
        status = outcome.statuses.get(name, "not materialized")
        print(f"{name:<{width}}  {'' if rows is None else rows:>8}  {status}")
    for problem in outcome.problems:
        print(f"  ! {problem}", file=sys.stderr)
    print(f"run {outcome.run_id}: {'succeeded' if outcome.success else 'failed'}")


Progress = Callable[[int, int], None]  # a generator's (done, in all)
Generated = TypeVar("Generated")


def _generating(kind: str, unit: str, generate: Callable[[Progress], Generated]) -> Generated:
    """Run a generator with a progress bar on a terminal; a bad argument, or a file or folder
    that could not be written, becomes one line."""
    with tqdm(unit=unit, disable=None, file=sys.stderr) as bar:

        def advance(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            return generate(advance)
        except (ValueError, OSError) as error:
            if isinstance(error, OSError) and error.filename is not None:
                message = f"cannot write {error.filename}: {error.strerror}"
            else:
                message = str(error)
            raise CommandError(f"generate {kind}: {message}") from None


def _truth_folder_exists(kind: str, args: argparse.Namespace) -> None:
    """Refuse a --truth file in a missing folder before generating, not after."""
    if getattr(args, "truth", None) and not Path(args.truth).resolve().parent.is_dir():
        raise CommandError(f"generate {kind}: --truth {args.truth}: its folder does not exist")


def cmd_generate(args: argparse.Namespace) -> int:
    files = _generating(
        "sdtm",
        "file",
        lambda progress: generate_sdtm(
            Path(args.out), args.subjects, study=args.study, seed=args.seed, progress=progress
        ),
    )
    for generated in files:
        print(f"  {generated.name:<10} {generated.rows:>8} rows  {generated.path}")
    print(f"{len(files)} SDTM files for {args.subjects} subjects of {args.study} in {args.out}")
    return 0


def cmd_generate_sensor(args: argparse.Namespace) -> int:
    # numpy and pyarrow cost every other command 0.2 s at start: imported only here.
    from clinical_platform.generators.sensor import generate_sensor

    _truth_folder_exists("sensor", args)
    generated = _generating(
        "sensor",
        "subject-day",
        lambda progress: generate_sensor(
            Path(args.out),
            args.subjects,
            args.days,
            study=args.study,
            seed=args.seed,
            start=args.start,
            file_format=args.format,
            progress=progress,
        ),
    )
    return _report_generated("sensor", args, generated, {"subject_days": generated.truth_json()})


def cmd_generate_omics(args: argparse.Namespace) -> int:
    from clinical_platform.generators.omics import generate_omics  # see cmd_generate_sensor

    _truth_folder_exists("omics", args)
    generated = _generating(
        "omics",
        "batch",
        lambda progress: generate_omics(
            Path(args.out),
            args.samples,
            args.genes,
            batches=args.batches,
            study=args.study,
            seed=args.seed,
            file_format=args.format,
            progress=progress,
        ),
    )
    truth = {
        "samples": [asdict(sample) for sample in generated.samples],
        "missing_genes": generated.missing_genes,
        "gene_variance": generated.gene_variance,
    }
    return _report_generated("omics", args, generated, truth)


def _report_generated(
    kind: str, args: argparse.Namespace, generated: GeneratedDelivery, truth: dict[str, object]
) -> int:
    """What a streaming generator wrote and injected; its truth as JSON when asked."""
    faults = ", ".join(f"{fault} {count}" for fault, count in generated.faults.items())
    print(f"{len(generated.files)} {kind} files, {generated.rows} data rows, in {args.out}")
    print(f"faults: {faults}")
    if args.truth:
        text = json.dumps({"faults": generated.faults, **truth}, indent=1)
        Path(args.truth).write_text(text + "\n", encoding="utf-8")
        print(f"truth: {args.truth}")
    return 0


def cmd_dossier(args: argparse.Namespace) -> int:
    delivery = _delivery(args.study, args.delivery)
    layout = _layout(args.lake, args.family)
    hop = None
    if args.column:
        try:
            hop = trace_column(layout, delivery, args.column, args.asset or None)
        except ColumnLineageError as error:
            raise CommandError(f"dossier --column: {error}") from None
    if args.format != "md":
        features = [o for o in asset_outputs(args.family) if o.zone is Zone.FEATURES]
        asset = hop.asset if hop else args.asset or features[-1].asset_key
        try:
            found = asset_dossier(layout, delivery, asset)
        except ValueError as error:
            raise CommandError(f"dossier: {error}") from None
        if hop:
            found["column_lineage"] = column_lineage_data(hop)
        if args.format == "json":
            text = json.dumps(found, indent=2, default=str) + "\n"
        else:
            text = render_html(found)
    else:
        try:
            text = render_dossier(layout, delivery, args.asset)
        except ValueError as error:
            raise CommandError(f"dossier: {error}") from None
        if hop:
            text += "\n".join(render_column_lineage(hop)) + "\n"
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"dossier of {delivery.key} written to {args.out}")
    else:
        print(text, end="")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    delivery = _delivery(args.study, args.delivery)
    try:
        found = verify_delivery(_layout(args.lake, args.family), delivery, args.asset)
    except ValueError as error:
        raise CommandError(f"verify: {error}") from None
    for problem in found.problems:
        print(problem)
    if not found.holds:
        raise CommandError(found.summary)
    print(found.summary)
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    arguments = ["--sql", args.query, "--format", args.format, "--max-rows", str(args.max_rows)]
    if args.as_of:
        arguments += ["--as-of", args.as_of]
    print(_spark_command(EntryPoint.QUERY, arguments, args.lake), end="")
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    if args.keep < 1:
        raise CommandError("retention --keep must be at least 1: the current version stays")
    arguments = ["--keep", str(args.keep), "--stage-hours", str(args.stage_hours)]
    print(_spark_command(EntryPoint.MAINTAIN, arguments, args.lake), end="")
    return 0


def _spark_command(entry: EntryPoint, arguments: list[str], lake: str | None) -> str:
    try:
        return run_spark_command(entry, arguments, _layout(lake))
    except SparkCommandError as error:
        raise CommandError(str(error)) from None


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(subjects=args.subjects, delivery_folder=os.environ.get("DEMO_DELIVERY"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clinical-platform",
        description="Land clinical deliveries and materialize them through Spark and Dagster.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    land = commands.add_parser("land", help="copy a delivery folder into landing and register it")
    land.add_argument("folder")
    land.add_argument("--study", required=True)
    land.add_argument("--delivery", required=True, help="transfer date YYYY-MM-DD[_n]")
    land.add_argument("--lake", help=f"lake root (default ${settings.LAKE_URI_VAR} or .lake)")
    land.add_argument(
        "--allow-duplicate",
        action="store_true",
        help="land files identical to an earlier delivery of the study (recorded as a duplicate)",
    )
    _add_family(land)
    land.set_defaults(handler=cmd_land)

    materialize = commands.add_parser(
        "materialize", help="materialize a delivery's assets in this process"
    )
    materialize.add_argument("--study", required=True)
    materialize.add_argument("--delivery", required=True)
    materialize.add_argument(
        "--select",
        help="comma-separated asset keys or patterns, e.g. 'raw_*,curated_dm' (default: all)",
    )
    materialize.add_argument("--lake")
    materialize.add_argument(
        "--checks-only",
        action="store_true",
        help="re-evaluate every check on the delivery's committed data; nothing is written",
    )
    _add_family(materialize)
    materialize.set_defaults(handler=cmd_materialize)

    backfill = commands.add_parser(
        "backfill",
        help="materialize a study's landed deliveries in one run, one Spark application per stage",
    )
    backfill.add_argument("--study", required=True)
    backfill.add_argument(
        "--from", dest="first", help="first delivery YYYY-MM-DD[_n] (default: the oldest landed)"
    )
    backfill.add_argument(
        "--to", dest="last", help="last delivery YYYY-MM-DD[_n] (default: the newest landed)"
    )
    backfill.add_argument(
        "--select",
        action="append",
        help="asset keys or patterns, comma-separated or repeated, e.g. 'raw_*' (default: all)",
    )
    backfill.add_argument("--lake")
    _add_family(backfill)
    backfill.set_defaults(handler=cmd_backfill)

    generate = commands.add_parser("generate", help="generate synthetic test data")
    kinds = generate.add_subparsers(dest="kind", required=True)
    sdtm = kinds.add_parser("sdtm", help="a deterministic synthetic SDTM delivery (.xpt)")
    sdtm.add_argument("--subjects", type=int, required=True)
    sdtm.add_argument("--out", required=True)
    sdtm.add_argument("--study", default=settings.DEMO_STUDY)
    sdtm.add_argument("--seed", type=int, default=20240115)
    sdtm.set_defaults(handler=cmd_generate)
    sensor = kinds.add_parser(
        "sensor", help="a deterministic wearable-sensor delivery at 1 Hz, with faults"
    )
    sensor.add_argument("--subjects", type=int, required=True)
    sensor.add_argument("--days", type=int, required=True, help="days per subject")
    sensor.add_argument("--out", required=True)
    sensor.add_argument("--study", default="SENSOR01")
    sensor.add_argument("--seed", type=int, default=20240101)
    sensor.add_argument("--start", type=date.fromisoformat, default=date(2024, 1, 1))
    sensor.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    sensor.add_argument(
        "--truth", help="also write the per-subject-day truth and fault counts to this JSON file"
    )
    sensor.set_defaults(handler=cmd_generate_sensor)
    omics = kinds.add_parser(
        "omics", help="deterministic RNA-seq counts (sample x gene) in batches, with faults"
    )
    omics.add_argument("--samples", type=int, required=True)
    omics.add_argument("--genes", type=int, default=20_000)
    omics.add_argument("--batches", type=int, default=2)
    omics.add_argument("--out", required=True)
    omics.add_argument("--study", default="OMICS01")
    omics.add_argument("--seed", type=int, default=20240201)
    omics.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    omics.add_argument(
        "--truth", help="also write the samples' truth, fault counts and gene variances to JSON"
    )
    omics.set_defaults(handler=cmd_generate_omics)

    dossier = commands.add_parser("dossier", help="print the audit dossier of a delivery")
    dossier.add_argument("--study", required=True)
    dossier.add_argument("--delivery", required=True)
    dossier.add_argument("--lake")
    dossier.add_argument("--out", help="write to this file instead of stdout")
    dossier.add_argument(
        "--column",
        help="also walk this column back to the variables of the landed files (e.g. sysbp_change)",
    )
    dossier.add_argument(
        "--asset",
        help="the asset of a JSON dossier (default: the feature table) or of --column "
        "(default: the first that has it)",
    )
    dossier.add_argument(
        "--format",
        choices=("md", "json", "html"),
        default="md",
        help="md: the delivery's dossier; json: one asset's, with every partition and landed "
        "file it was computed from, its checks and the verify result; html: the same as one "
        "self-contained page with the lineage graph",
    )
    _add_family(dossier)
    dossier.set_defaults(handler=cmd_dossier)

    verify = commands.add_parser(
        "verify",
        help="prove a delivery's landing files, data files and lineage records unchanged",
    )
    verify.add_argument("--study", required=True)
    verify.add_argument("--delivery", required=True)
    verify.add_argument("--asset", help="only this asset and what it was computed from")
    verify.add_argument("--lake")
    _add_family(verify)
    verify.set_defaults(handler=cmd_verify)

    sql = commands.add_parser("sql", help="run Spark SQL against the lake's tables")
    sql.add_argument("query", help='e.g. "select * from curated.clinical_vs limit 5"')
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")
    sql.add_argument("--as-of", help="read the tables as of a snapshot id or an ISO 8601 time")
    sql.add_argument("--max-rows", type=int, default=1000)
    sql.add_argument("--lake")
    sql.set_defaults(handler=cmd_sql)

    retention = commands.add_parser(
        "retention", help="expire old table versions, keeping the newest N of each table"
    )
    retention.add_argument("--keep", type=int, required=True)
    retention.add_argument(
        "--stage-hours", type=float, default=24.0, help="drop staging branches older than this"
    )
    retention.add_argument("--lake")
    retention.set_defaults(handler=cmd_retention)

    demo = commands.add_parser("demo", help="generate, land and materialize a sample delivery")
    demo.add_argument("--subjects", type=int, default=120)
    demo.set_defaults(handler=cmd_demo)

    add_emr_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    # Dagster marks some Pipes internals as preview; that is noise for a user of this CLI.
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except CommandError as error:
        print(f"clinical-platform: {error}", file=sys.stderr)
        code = EXIT_FAILED
    except settings.SettingsError as error:
        print(f"clinical-platform: {error}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        print("clinical-platform: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
