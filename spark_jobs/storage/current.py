"""A study's current data: for each dataset, the latest delivery that carried it.

A delivery may carry any subset of domains. A domain's current data as of delivery D is its
partition from the latest delivery at or before D that carried it: a delivery carries a
domain when it landed a file of it, readable or not (its raw partition is then `accepted` or
`rejected`). A domain delivered broken is never replaced by an older copy: its current data
is the rejected partition, and whoever reads it is told why there is none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spark_jobs.contracts.layout import Delivery, Zone, delivery_order
from spark_jobs.contracts.outputs import output
from spark_jobs.storage.tables import LakeTables

CARRIED = ("accepted", "rejected")  # raw statuses of a domain a delivery carried


@dataclass(frozen=True)
class Holder:
    """The delivery whose partition is a dataset's current data, and its raw record."""

    dataset: str
    delivery: Delivery
    raw_record: Mapping[str, Any]

    @property
    def rejected(self) -> bool:
        return self.raw_record["status"] != "accepted"

    @property
    def reason(self) -> str:
        return str(self.raw_record.get("reason") or self.raw_record["status"])


def _order(record: Mapping[str, Any]) -> tuple[str, int]:
    return delivery_order(Delivery.from_key(record["partition"]).delivery)


def holder(tables: LakeTables, dataset: str, as_of: Delivery | str) -> Holder | None:
    """The latest delivery at or before `as_of` (a delivery, or a study for its latest of
    all) that carried `dataset`; None when no delivery of the study has yet."""
    study = as_of.study if isinstance(as_of, Delivery) else as_of
    records = tables.records(output(Zone.RAW, dataset), study)
    carried = [r for r in records if r["status"] in CARRIED]
    if isinstance(as_of, Delivery):
        limit = delivery_order(as_of.delivery)
        carried = [r for r in carried if _order(r) <= limit]
    if not carried:
        return None
    latest = max(carried, key=_order)
    return Holder(dataset, Delivery.from_key(latest["partition"]), latest)
