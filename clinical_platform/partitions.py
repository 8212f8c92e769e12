"""Partitions: one dynamic key per delivery of a study, `STUDY/YYYY-MM-DD[_n]`.

A single dynamic dimension (rather than study x date) lists only deliveries that exist, so a
backfill of "missing" partitions never invents one. Keys are added by `clinical-platform land`
(and `materialize` and `backfill`, which register the deliveries they run).
"""

from __future__ import annotations

import dagster as dg

from spark_jobs.contracts.layout import CLINICAL_FAMILY, Delivery
from spark_jobs.contracts.omics import OMICS_FAMILY
from spark_jobs.contracts.sensor import SENSOR_FAMILY

CLINICAL_DELIVERIES = dg.DynamicPartitionsDefinition(name="clinical_deliveries")
# A sensor delivery is an upload batch; its key names the batch (`STUDY/YYYY-MM-DD[_n]`).
SENSOR_DELIVERIES = dg.DynamicPartitionsDefinition(name="sensor_deliveries")
# An omics delivery is one sequencing batch.
OMICS_DELIVERIES = dg.DynamicPartitionsDefinition(name="omics_deliveries")
DELIVERIES_OF_FAMILY = {
    CLINICAL_FAMILY: CLINICAL_DELIVERIES,
    SENSOR_FAMILY: SENSOR_DELIVERIES,
    OMICS_FAMILY: OMICS_DELIVERIES,
}


def deliveries_def(family: str) -> dg.DynamicPartitionsDefinition:
    """The partitions (deliveries) of a source family's assets."""
    return DELIVERIES_OF_FAMILY[family]


def deliveries_of(context: dg.AssetExecutionContext) -> list[Delivery]:
    """The deliveries of a step (several when a backfill hands it a range), oldest first, with
    a clear error for a malformed key."""
    return sorted(Delivery.from_key(key) for key in context.partition_keys)
