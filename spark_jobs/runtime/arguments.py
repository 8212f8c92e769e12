"""The command line every entry point shares: which lake, which deliveries, which datasets.

Jobs are given the lake root and find every path through `LakeLayout`, so a launcher never
spells a zone path and a job never rebuilds one by hand.
"""

from __future__ import annotations

import argparse
import uuid
from dataclasses import dataclass

from spark_jobs.contracts import FAMILY_CONTRACTS, family_contracts
from spark_jobs.contracts.layout import CLINICAL_FAMILY, Delivery, LakeLayout, PartitionKeyError


@dataclass(frozen=True)
class DeliveryArgs:
    """What every job is asked to do for one delivery of one study, in one lake."""

    layout: LakeLayout
    delivery: Delivery
    run_id: str
    checks_only: bool


def delivery_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=(doc or "").splitlines()[0])
    parser.add_argument("--lake", required=True, help="lake root: file:/path or s3://bucket/prefix")
    parser.add_argument(
        "--family",
        default=CLINICAL_FAMILY,
        choices=sorted(FAMILY_CONTRACTS),
        help="source family (zone subtree)",
    )
    parser.add_argument("--study")
    parser.add_argument("--delivery")
    parser.add_argument(
        "--deliveries",
        help="several deliveries in one application, as partition keys: STUDY/DELIVERY,...",
    )
    parser.add_argument("--run-id", default=None)
    parser.add_argument(
        "--checks-only", action="store_true", help="re-evaluate checks; write nothing"
    )
    return parser


def add_datasets_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datasets", default=None, help="default: every dataset of the family")


def delivery_batch(
    parser: argparse.ArgumentParser, ns: argparse.Namespace
) -> tuple[DeliveryArgs, ...]:
    """The deliveries named by `--study S --delivery D` or `--deliveries S/D1,S/D2`, oldest
    first (by study, then transfer): a later delivery's checks compare with the earlier ones."""
    if ns.deliveries is not None and (ns.study or ns.delivery):
        parser.error("give either --study and --delivery, or --deliveries, not both")
    try:
        if ns.deliveries is not None:
            keys = {k.strip() for k in ns.deliveries.split(",") if k.strip()}
            deliveries = sorted(Delivery.from_key(key) for key in keys)
        elif ns.study and ns.delivery:
            deliveries = [Delivery(ns.study, ns.delivery)]
        else:
            deliveries = []
    except PartitionKeyError as error:
        parser.error(str(error))
    if not deliveries:
        parser.error("name the delivery: --study S --delivery D, or --deliveries S/D1,S/D2")
    layout = LakeLayout(ns.lake, family=ns.family)
    run_id = ns.run_id or uuid.uuid4().hex
    return tuple(DeliveryArgs(layout, d, run_id, ns.checks_only) for d in deliveries)


def dataset_names(
    parser: argparse.ArgumentParser, value: str | None, family: str = CLINICAL_FAMILY
) -> tuple[str, ...]:
    """Known dataset names of the family in contract order (DM first: the others check
    subjects against it); every one when none is named."""
    known = tuple(c.name for c in family_contracts(family))
    if value is None:
        return known
    datasets = {d.strip().lower() for d in value.split(",") if d.strip()}
    unknown = sorted(datasets - set(known))
    if unknown:
        parser.error(f"unknown {family} datasets {unknown}; known: {sorted(known)}")
    return tuple(name for name in known if name in datasets)
