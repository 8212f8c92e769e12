"""The landing sensors: a delivery dropped into a family's landing zone is checked and
processed, no click. One sensor per family (`<family>_landing_sensor`), the same logic.

Each tick lists, per study, only the keys after the study's cursor key, plus the deliveries
still waiting (their prefix alone), so its cost does not grow with old deliveries. A delivery
is complete when its `_delivery.json` is there and every file matches it (size; SHA-256 from
S3's stored checksum, or read for files under a size limit), or, without a manifest, when its
listing has not changed for a quiet period; the sensor then writes the manifest as `land`
does. A complete delivery gets its partition and one run of every stage for the datasets it
carries, with run key = delivery key + manifest hash. Bad keys are skipped or their delivery
refused with a reason in the tick log; nothing stops the sensor.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import dagster as dg

from clinical_platform.clinical.assets import landing_key
from clinical_platform.clinical.landing import LandingPolicy, landing_observation
from clinical_platform.lake import ClinicalLake, LandedFile, manifest_files, manifest_text
from clinical_platform.landing_zone import (
    LandingObject,
    LandingZone,
    LandingZoneError,
    delivery_prefix,
    landing_zone,
    manifest_key,
)
from clinical_platform.launchers.base import ENTRY_TAG
from clinical_platform.partitions import deliveries_def
from clinical_platform.runs import assets_of_files
from spark_jobs.contracts import DATA_EXTENSIONS, skip_reason
from spark_jobs.contracts.layout import (
    CLINICAL_FAMILY,
    MANIFEST_NAME,
    Delivery,
    PartitionKeyError,
    Zone,
)
from spark_jobs.contracts.outputs import asset_outputs, family_outputs

DELIVERY_TAG = "clinical/delivery"
MANIFEST_TAG = "clinical/manifest_sha256"
# Another family's deliveries may share a study and delivery id; its runs say whose they are
# (a run without the tag is clinical's, as every run was before the other families).
FAMILY_TAG = "clinical/family"


def sensor_name(family: str) -> str:
    return f"{family}_landing_sensor"


SENSOR_NAME = sensor_name(CLINICAL_FAMILY)


@dataclass
class Waiting:
    """A delivery seen but not started: its listing's signature, since when, last note."""

    signature: str
    since: float
    note: str = ""


@dataclass
class LandingCursor:
    """How far each study's landing has been listed, and the deliveries still open."""

    after: dict[str, str] = field(default_factory=dict)  # study -> last key listed
    waiting: dict[str, Waiting] = field(default_factory=dict)  # delivery key -> state
    ignored: list[str] = field(default_factory=list)  # top-level names that are no study

    @classmethod
    def load(cls, text: str | None) -> LandingCursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            after=dict(data.get("after", {})),
            waiting={k: Waiting(**v) for k, v in data.get("waiting", {}).items()},
            ignored=list(data.get("ignored", [])),
        )

    def dump(self) -> str:
        return json.dumps(
            {
                "after": self.after,
                "waiting": {k: asdict(v) for k, v in sorted(self.waiting.items())},
                "ignored": sorted(self.ignored),
            },
            sort_keys=True,
        )


@dataclass(frozen=True)
class Verdict:
    state: Literal["ready", "waiting", "refused"]
    reason: str
    manifest: bytes = b""
    notes: tuple[str, ...] = ()  # files ingest will reject or skip, for the tick log


def key_problem(key: str) -> str | None:
    """Why a landing key cannot belong to a delivery (None if it can)."""
    parts = key.split("/")
    if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return "empty, '.' or '..' path segment (absolute or relative path)"
    if len(parts) < 3:
        return "not inside a delivery folder STUDY/DELIVERY/"
    return None


def signature(objects: Iterable[LandingObject]) -> str:
    listing = sorted((o.key, o.size, o.version) for o in objects)
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def case_clashes(names: Iterable[str]) -> list[str]:
    by_lower: dict[str, list[str]] = {}
    for name in names:
        by_lower.setdefault(name.lower(), []).append(name)
    return sorted(", ".join(sorted(group)) for group in by_lower.values() if len(group) > 1)


def file_notes(files: Iterable[LandedFile]) -> tuple[str, ...]:
    """What ingest will make of unusual files (it records each in rejected_files)."""
    notes = []
    for f in files:
        skipped = skip_reason(f.name)
        if skipped:
            notes.append(f"{f.name}: {skipped}")
        elif f.size == 0:
            notes.append(f"{f.name}: empty; ingest will reject it")
        elif f.name.rsplit(".", 1)[-1].lower() not in DATA_EXTENSIONS:
            notes.append(f"{f.name}: unknown file type; ingest will reject it")
    return tuple(notes)


def judge(
    zone: LandingZone,
    delivery: Delivery,
    objects: list[LandingObject],
    waiting: Waiting | None,
    now: float,
    policy: LandingPolicy,
) -> Verdict:
    """Is the delivery complete, still arriving, or refused (and why)?"""
    prefix = delivery_prefix(delivery)
    by_name = {o.key[len(prefix) :]: o for o in objects}
    nested = sorted(n for n in by_name if "/" in n)
    if nested:
        return Verdict("refused", f"sub-folder entries {nested}: a delivery is one flat folder")
    clashes = case_clashes(by_name)
    if clashes:
        return Verdict("refused", f"file names differ only in case ({'; '.join(clashes)})")
    if MANIFEST_NAME in by_name:
        return _judge_manifest(zone, delivery, by_name, policy)
    transfers = sorted(n for n in by_name if skip_reason(n) and not n.startswith("."))
    if transfers:
        return Verdict("waiting", f"transfer under way ({', '.join(transfers)})")
    if not by_name:
        return Verdict("waiting", "no files yet")
    current = signature(objects)
    if waiting is None or waiting.signature != current:
        return Verdict("waiting", "no manifest; waiting for the listing to stay unchanged")
    quiet = now - waiting.since
    if quiet < policy.quiet_period_seconds:
        return Verdict(
            "waiting",
            f"no manifest; unchanged for {quiet:.0f} s of {policy.quiet_period_seconds} s",
        )
    files = [LandedFile(n, by_name[n].size, zone.sha256(by_name[n].key)) for n in sorted(by_name)]
    text = manifest_text(delivery, files, delivery.delivery).encode()
    zone.write(manifest_key(delivery), text)
    return Verdict("ready", "manifest written by the sensor", text, file_notes(files))


def _judge_manifest(
    zone: LandingZone,
    delivery: Delivery,
    by_name: Mapping[str, LandingObject],
    policy: LandingPolicy,
) -> Verdict:
    text = zone.read(manifest_key(delivery))
    try:
        manifest = json.loads(text)
        files = manifest_files(manifest)
        named = (manifest.get("study", delivery.study), manifest.get("delivery", delivery.delivery))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        return Verdict("refused", f"{MANIFEST_NAME} is malformed ({type(error).__name__}: {error})")
    if named != (delivery.study, delivery.delivery):
        return Verdict("refused", f"{MANIFEST_NAME} names {named[0]}/{named[1]}, not this folder")
    missing = [f.name for f in files if f.name not in by_name]
    if missing:
        return Verdict("waiting", f"waiting for files the manifest lists: {', '.join(missing)}")
    listed = {f.name for f in files} | {MANIFEST_NAME}
    extra = sorted(n for n in by_name if n not in listed)
    transfers = [n for n in extra if skip_reason(n) and not n.startswith(".")]
    if transfers:
        return Verdict("waiting", f"transfer under way ({', '.join(transfers)})")
    unlisted = [n for n in extra if not n.startswith(".")]
    if unlisted:
        return Verdict("refused", f"files not in {MANIFEST_NAME}: {', '.join(unlisted)}")
    for f in files:
        found = by_name[f.name]
        if found.size != f.size:
            return Verdict(
                "refused", f"{f.name} is {found.size} bytes, {MANIFEST_NAME} says {f.size}"
            )
        stored = zone.stored_sha256(found.key)
        if stored is None and f.size <= policy.verify_sha256_below_bytes:
            stored = zone.sha256(found.key)
        if stored is not None and stored != f.sha256:
            return Verdict("refused", f"{f.name}: SHA-256 differs from {MANIFEST_NAME}")
    return Verdict("ready", "manifest present, every file matches", text, file_notes(files))


@dataclass
class Tick:
    """What one evaluation decided: runs to start, partitions to add, lines for the log."""

    cursor: LandingCursor
    runs: list[dg.RunRequest] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)
    # The landing source's data version of each delivery a run is requested for, recorded
    # before the run starts so that its raw partitions name the landing they were computed from.
    observations: list[dg.AssetObservation] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)  # (level, line)

    def say(self, level: str, line: str) -> None:
        self.log.append((level, line))


def new_keys(zone: LandingZone, tick: Tick) -> dict[Delivery, list[LandingObject] | None]:
    """Per delivery, its keys listed after the cursor (None: listed only in part)."""
    found: dict[Delivery, list[LandingObject] | None] = {}
    for study in zone.studies():
        try:
            Delivery(study, "2000-01-01")
        except PartitionKeyError as error:
            if study not in tick.cursor.ignored and not study.startswith("."):
                tick.say("warning", f"{zone.uri(study)}/ skipped: not a study folder ({error})")
            if study not in tick.cursor.ignored:
                tick.cursor.ignored.append(study)
            continue
        start = tick.cursor.after.get(study, "")
        for obj in zone.objects(f"{study}/", start):
            tick.cursor.after[study] = obj.key
            problem = key_problem(obj.key)
            if problem:
                tick.say("warning", f"{zone.uri(obj.key)} skipped: {problem}")
                continue
            folder = obj.key.split("/")[1]
            try:
                delivery = Delivery(study, folder)
            except PartitionKeyError as error:
                if not folder.startswith("."):  # `land`'s hidden staging folders
                    tick.say("warning", f"{zone.uri(obj.key)} skipped: {error}")
                continue
            complete = start < delivery_prefix(delivery)
            listed = found.setdefault(delivery, [] if complete else None)
            if listed is not None:
                listed.append(obj)
    return found


def earlier_run(
    instance: dg.DagsterInstance, delivery: Delivery, family: str
) -> dg.DagsterRun | None:
    """The family's last sensor-started run of the delivery."""
    tags = {DELIVERY_TAG: delivery.key, ENTRY_TAG: "sensor"}
    runs = instance.get_runs(filters=dg.RunsFilter(tags={**tags, FAMILY_TAG: family}), limit=1)
    if runs or family != CLINICAL_FAMILY:
        return runs[0] if runs else None
    # Runs started before the families were tagged are all clinical's.
    untagged = [
        r for r in instance.get_runs(filters=dg.RunsFilter(tags=tags)) if FAMILY_TAG not in r.tags
    ]
    return untagged[0] if untagged else None


def already_materialized(
    instance: dg.DagsterInstance, delivery: Delivery, keys: list[dg.AssetKey], family: str
) -> bool:
    """Whether the delivery's first raw asset has a materialization (`materialize` ran it)."""
    raw_keys = {dg.AssetKey(o.asset_key) for o in family_outputs(family, Zone.RAW)}
    raw = [k for k in keys if k in raw_keys]
    if not raw:
        return False
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=raw[0], asset_partitions=[delivery.key]), limit=1
    )
    return bool(records.records)


def decide(
    delivery: Delivery,
    verdict: Verdict,
    objects: list[LandingObject],
    tick: Tick,
    instance: dg.DagsterInstance,
    now: float,
    family: str = CLINICAL_FAMILY,
) -> None:
    """Record the verdict: keep waiting, log the refusal once, or request the run."""
    key = delivery.key
    if verdict.state != "ready":
        previous = tick.cursor.waiting.get(key)
        current = signature(objects)
        since = previous.since if previous and previous.signature == current else now
        if previous is None or previous.note != verdict.reason:
            level = "warning" if verdict.state == "refused" else "info"
            tick.say(level, f"{key}: {verdict.state} — {verdict.reason}")
        tick.cursor.waiting[key] = Waiting(current, since, verdict.reason)
        return
    tick.cursor.waiting.pop(key, None)
    digest = hashlib.sha256(verdict.manifest).hexdigest()
    before = earlier_run(instance, delivery, family)
    if before is not None:
        if before.tags.get(MANIFEST_TAG) != digest:
            tick.say(
                "warning",
                f"{key}: refused — already landed with different files; deliveries are "
                "immutable, send the correction as a new transfer (…_2)",
            )
        return
    names = [f.name for f in manifest_files(json.loads(verdict.manifest))]
    keys = assets_of_files(names, family)
    for note in verdict.notes:
        tick.say("info", f"{key}: {note}")
    if already_materialized(instance, delivery, keys, family):
        tick.say("info", f"{key}: already materialized (clinical-platform materialize); no run")
        return
    tick.partitions.append(key)
    tick.observations.append(landing_observation(key, digest, landing_key(family)))
    tick.runs.append(
        dg.RunRequest(
            run_key=f"{key}@{digest[:16]}",
            partition_key=key,
            asset_selection=keys,
            tags={
                DELIVERY_TAG: key,
                MANIFEST_TAG: digest,
                ENTRY_TAG: "sensor",
                FAMILY_TAG: family,
            },
        )
    )
    tick.say("info", f"{key}: complete ({verdict.reason}); run of {len(keys)} assets requested")


def evaluate(
    zone: LandingZone,
    cursor: LandingCursor,
    instance: dg.DagsterInstance,
    policy: LandingPolicy,
    now: float,
    family: str = CLINICAL_FAMILY,
) -> Tick:
    """One tick over a family's landing zone: no Spark, no file read beyond manifests (and
    the SHA-256 of small files when the store keeps none)."""
    tick = Tick(cursor)
    found = new_keys(zone, tick)
    for key in cursor.waiting:
        found.setdefault(Delivery.from_key(key), None)
    for delivery, listed in sorted(found.items()):
        try:
            objects = listed
            if objects is None:
                objects = list(zone.objects(delivery_prefix(delivery)))
            waiting = tick.cursor.waiting.get(delivery.key)
            verdict = judge(zone, delivery, objects, waiting, now, policy)
            decide(delivery, verdict, objects, tick, instance, now, family)
        except LandingZoneError as error:
            tick.say("warning", f"{delivery.key}: not evaluated this tick — {error}")
    return tick


def landing_sensor_of(family: str) -> dg.SensorDefinition:
    """The sensor of one family's landing zone (`<lake>/landing/<family>/STUDY/DELIVERY/`):
    it adds the family's delivery partitions and targets the family's assets only."""
    keys = [dg.AssetKey(o.asset_key) for o in asset_outputs(family)]
    partitions = deliveries_def(family)

    @dg.sensor(
        name=sensor_name(family),
        description=f"Starts a run of every {family} stage when a complete delivery lands in "
        f"landing/{family}/ (S3 or local).",
        target=dg.AssetSelection.assets(*keys),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def family_landing_sensor(
        context: dg.SensorEvaluationContext, lake: ClinicalLake, landing_policy: LandingPolicy
    ) -> dg.SensorResult:
        try:
            cursor = LandingCursor.load(context.cursor)
        except (ValueError, TypeError) as error:
            context.log.warning(f"cursor unreadable ({error}); listing landing from the start")
            cursor = LandingCursor()
        zone = landing_zone(replace(lake.layout, family=family))
        tick = evaluate(zone, cursor, context.instance, landing_policy, time.time(), family)
        for level, line in tick.log:
            getattr(context.log, level)(line)
        return dg.SensorResult(
            run_requests=tick.runs,
            cursor=tick.cursor.dump(),
            dynamic_partitions_requests=(
                [partitions.build_add_request(tick.partitions)] if tick.partitions else []
            ),
            skip_reason=None if tick.runs else "no complete new delivery",
            asset_events=tick.observations,
        )

    return family_landing_sensor


clinical_landing_sensor = landing_sensor_of(CLINICAL_FAMILY)
