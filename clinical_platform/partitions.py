"""Partitions: one dynamic key per delivery of a study, `STUDY/YYYY-MM-DD[_n]`.

A single dynamic dimension (rather than study x date) lists only deliveries that exist, so a
backfill of "missing" partitions never invents one. Keys are added by `clinical-platform land`
(and `materialize`, which registers the delivery it runs).
"""

from __future__ import annotations

import dagster as dg

from spark_jobs.contracts.layout import Delivery

CLINICAL_DELIVERIES = dg.DynamicPartitionsDefinition(name="clinical_deliveries")


def delivery_of(context: dg.AssetExecutionContext) -> Delivery:
    """The delivery a run materializes, with a clear error for a malformed key."""
    return Delivery.from_key(context.partition_key)
