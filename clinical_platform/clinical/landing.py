"""Landing on the graph: the delivered files as an observable source, and the late-delivery
warning.

`landing_clinical` is where the graph starts: one partition per delivery, its data version the
SHA-256 of the delivery's manifest, so a raw partition shows which files it came from. The
`deliveries_on_time` check warns (never fails) when a study's newest delivery is older than
its expected cadence; a daily schedule evaluates it, and so can *Execute checks* in the UI.
"""

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG
from pydantic import Field

from clinical_platform.lake import ClinicalLake
from clinical_platform.landing_zone import LandingZoneError, landing_zone, manifest_key
from clinical_platform.partitions import deliveries_def
from spark_jobs.contracts.layout import (
    CLINICAL_FAMILY,
    MANIFEST_NAME,
    Delivery,
    LakeLayout,
    PartitionKeyError,
    Zone,
    delivery_order,
)

LANDING_KEY = dg.AssetKey(f"{Zone.LANDING.value}_{CLINICAL_FAMILY}")
ON_TIME_CHECK = "deliveries_on_time"
# Days expected between two deliveries of a study, as agreed with its CRO.
EXPECTED_EVERY_DAYS: dict[str, int] = {"CDISCPILOT01": 90}


class LandingPolicy(dg.ConfigurableResource):
    """When a delivery counts as complete, and how often each study is expected to deliver."""

    quiet_period_seconds: int = Field(
        default=600,
        description="A delivery without a manifest is complete once its listing has not "
        "changed for this long; the sensor then writes its manifest.",
    )
    verify_sha256_below_bytes: int = Field(
        default=64 << 20,
        description="Files up to this size are read to check their SHA-256 against the "
        "manifest when the store keeps no checksum (S3 uploads by `land` carry one).",
    )
    expected_every_days: dict[str, int] = Field(
        default_factory=lambda: dict(EXPECTED_EVERY_DAYS),
        description="Per study, the most days expected between deliveries; a study whose "
        "newest delivery is older raises the late-delivery warning.",
    )


def registered_deliveries(
    instance: dg.DagsterInstance, family: str = CLINICAL_FAMILY
) -> list[Delivery]:
    name = deliveries_def(family).name
    assert name is not None
    deliveries = []
    for key in instance.get_dynamic_partitions(name):
        try:
            deliveries.append(Delivery.from_key(key))
        except PartitionKeyError:
            continue  # a key added by hand in the UI; its run refuses it
    return deliveries


def manifest_version(zone: Any, delivery: Delivery) -> dg.DataVersion | None:
    """The data version of a landed delivery: its manifest's SHA-256 (None when unreadable)."""
    try:
        text = zone.read(manifest_key(delivery))
    except LandingZoneError:
        return None
    return dg.DataVersion(hashlib.sha256(text).hexdigest())


def landing_observation(
    delivery_key: str, version: str, key: dg.AssetKey = LANDING_KEY
) -> dg.AssetObservation:
    """The landing source observed for one delivery: its data version, the manifest's sha256."""
    return dg.AssetObservation(
        asset_key=key, partition=delivery_key, tags={DATA_VERSION_TAG: version}
    )


def observe_landed(
    instance: dg.DagsterInstance, layout: LakeLayout, deliveries: Iterable[Delivery]
) -> None:
    """Record the landing source's data version (its manifest's SHA-256) of each delivery
    whose last observed version differs.

    Called before a run computes raw from the deliveries (Dagster takes a run's input data
    versions as they stand when its step starts), so that each raw partition records the
    landing version it was computed from: without it, the first observation of the source
    (the UI's "Observe") would mark every raw partition stale, and a replaced landing file
    none.
    """
    zone = landing_zone(layout)
    key = dg.AssetKey(f"{Zone.LANDING.value}_{layout.family}")
    for delivery in deliveries:
        version = manifest_version(zone, delivery)
        if version is None:
            continue
        last = instance.get_latest_data_version_record(
            key, is_source=True, partition_key=delivery.key
        )
        seen = last.asset_event if last is not None else None
        if seen is not None and (seen.tags or {}).get(DATA_VERSION_TAG) == version.value:
            continue
        instance.report_runless_asset_event(landing_observation(delivery.key, version.value, key))


def landing_source(family: str, description: str) -> dg.SourceAsset:
    """A family's landed deliveries as an observable source (`landing_<family>`), one
    partition per delivery, versioned by the SHA-256 of its manifest."""

    @dg.observable_source_asset(
        name=f"{Zone.LANDING.value}_{family}",
        group_name=Zone.LANDING.value,
        description=f"{description}; the data version of a partition is the SHA-256 of its "
        "delivery manifest.",
        partitions_def=deliveries_def(family),
        tags={"family": family, "zone": Zone.LANDING.value},
    )
    def observe(context: dg.AssetExecutionContext, lake: ClinicalLake) -> Any:
        zone = landing_zone(replace(lake.layout, family=family))
        versions: dict[str, dg.DataVersion] = {}
        for delivery in registered_deliveries(context.instance, family):
            version = manifest_version(zone, delivery)
            if version is None:
                context.log.warning(f"{delivery.key}: no readable {MANIFEST_NAME}")
                continue
            versions[delivery.key] = version
        return dg.DataVersionsByPartition(versions)

    return observe


landing_clinical = landing_source(
    CLINICAL_FAMILY, "Files as the CROs delivered them, one partition per delivery"
)


def late_studies(
    deliveries: Iterable[Delivery], expected: Mapping[str, int], today: dt.date
) -> dict[str, str]:
    """Per late study, one line: its newest delivery and how overdue the next one is."""
    newest: dict[str, dt.date] = {}
    for delivery in deliveries:
        day = dt.date.fromisoformat(delivery_order(delivery.delivery)[0])
        newest[delivery.study] = max(day, newest.get(delivery.study, day))
    late: dict[str, str] = {}
    for study, days in sorted(expected.items()):
        last = newest.get(study)
        if last is None:
            late[study] = f"no delivery yet (expected every {days} days)"
        elif (today - last).days > days:
            overdue = (today - last).days - days
            late[study] = (
                f"newest delivery {last.isoformat()} is {(today - last).days} days old; "
                f"expected every {days} days ({overdue} days overdue)"
            )
    return late


@dg.asset_check(
    asset=LANDING_KEY,
    name=ON_TIME_CHECK,
    description="Warns when a study's newest delivery is older than its expected cadence.",
    blocking=False,
)
def deliveries_on_time(
    context: dg.AssetCheckExecutionContext, landing_policy: LandingPolicy
) -> dg.AssetCheckResult:
    deliveries = registered_deliveries(context.instance)
    late = late_studies(deliveries, landing_policy.expected_every_days, dt.date.today())
    return dg.AssetCheckResult(
        passed=not late,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(f"{s}: {why}" for s, why in late.items()) or "every study on time",
        metadata={
            "late_studies": sorted(late),
            "expected_every_days": dict(landing_policy.expected_every_days),
            **{f"late/{study}": why for study, why in late.items()},
        },
    )


late_deliveries_job = dg.define_asset_job(
    "late_deliveries", selection=dg.AssetSelection.checks(deliveries_on_time)
)
late_delivery_schedule = dg.ScheduleDefinition(
    name="late_delivery_warning",
    job=late_deliveries_job,
    cron_schedule="0 6 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every morning, warn about studies whose next delivery is overdue.",
)
