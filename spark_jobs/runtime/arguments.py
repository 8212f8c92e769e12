"""The command line every entry point shares: which lake, which delivery, which datasets.

Jobs are given the lake root and find every path through `LakeLayout`, so a launcher never
spells a zone path and a job never rebuilds one by hand.
"""

from __future__ import annotations

import argparse
import uuid
from dataclasses import dataclass

from spark_jobs.contracts import SDTM_CONTRACTS
from spark_jobs.contracts.layout import CLINICAL_FAMILY, Delivery, LakeLayout, PartitionKeyError

DATASET_NAMES = tuple(c.name for c in SDTM_CONTRACTS)


@dataclass(frozen=True)
class DeliveryArgs:
    """What every job is asked to do: one delivery of one study, in one lake."""

    layout: LakeLayout
    delivery: Delivery
    run_id: str
    checks_only: bool


def delivery_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=(doc or "").splitlines()[0])
    parser.add_argument("--lake", required=True, help="lake root: file:/path or s3://bucket/prefix")
    parser.add_argument("--family", default=CLINICAL_FAMILY, help="source family (zone subtree)")
    parser.add_argument("--study", required=True)
    parser.add_argument("--delivery", required=True)
    parser.add_argument("--run-id", default=None)
    parser.add_argument(
        "--checks-only", action="store_true", help="re-evaluate checks; write nothing"
    )
    return parser


def add_datasets_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datasets", default=",".join(DATASET_NAMES))


def delivery_args(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> DeliveryArgs:
    try:
        delivery = Delivery(ns.study, ns.delivery)
    except PartitionKeyError as error:
        parser.error(str(error))
    return DeliveryArgs(
        layout=LakeLayout(ns.lake, family=ns.family),
        delivery=delivery,
        run_id=ns.run_id or uuid.uuid4().hex,
        checks_only=ns.checks_only,
    )


def dataset_names(parser: argparse.ArgumentParser, value: str) -> tuple[str, ...]:
    """Known dataset names in contract order (DM first: the others check subjects against it)."""
    datasets = {d.strip().lower() for d in value.split(",") if d.strip()}
    unknown = sorted(datasets - set(DATASET_NAMES))
    if unknown:
        parser.error(f"unknown datasets {unknown}; known: {sorted(DATASET_NAMES)}")
    return tuple(name for name in DATASET_NAMES if name in datasets)
