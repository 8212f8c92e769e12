"""The audit dossier of one delivery: where every number of every zone came from.

Built only from what the lake itself holds (the landing manifest, the tables' `system.lineage`
records and the rejected files), so it can be produced without the Dagster database.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from clinical_platform.catalog import LineageIndex
from clinical_platform.lake import (
    delivery_records,
    lineage_index,
    read_manifest,
    rejected_files,
    same_data_elsewhere,
)
from clinical_platform.lineage.verify import asset_output, computed_from, verify_delivery
from spark_jobs.contracts.layout import (
    CLINICAL_FAMILY,
    MANIFEST_NAME,
    Delivery,
    LakeLayout,
    local_path,
)
from spark_jobs.contracts.outputs import Zone, asset_outputs, every_asset_output


def partition_records(
    layout: LakeLayout, delivery: Delivery, index: LineageIndex | None = None
) -> list[dict[str, Any]]:
    """Lineage records of every committed partition of the delivery, in zone order."""
    found = delivery_records(layout, delivery, index)
    return [
        {"asset": output.asset_key, "table": output.table, **found[output.table]}
        for output in asset_outputs(layout.family)
        if output.table in found
    ]


def files_section(records: list[dict[str, Any]]) -> list[str]:
    """Every landed file with what became of it, from the raw records' accounting."""
    accounting = next((r["delivery_files"] for r in records if r.get("delivery_files")), None)
    lines = ["", "## Every file accounted for", ""]
    if accounting is None:
        return [*lines, "No raw partition of this delivery records its files."]
    rejected, skipped = accounting["rejected"], accounting["skipped"]
    lines += [
        f"{accounting['landed']} files landed = {len(accounting['accepted'])} accepted + "
        f"{len(rejected)} rejected + {len(skipped)} skipped"
        + (
            f" + {len(accounting['not_ingested'])} not ingested"
            if accounting["not_ingested"]
            else ""
        )
        + ".",
        "",
        "| file | disposition | reason |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | accepted | |" for name in accounting["accepted"]]
    lines += [f"| {r['file']} | rejected | {r['reason']} |" for r in rejected]
    lines += [f"| {r['file']} | skipped | {r['reason']} |" for r in skipped]
    lines += [f"| {name} | not ingested | not asked for |" for name in accounting["not_ingested"]]
    return lines


def same_data_section(
    layout: LakeLayout,
    delivery: Delivery,
    records: list[dict[str, Any]],
    index: LineageIndex | None = None,
) -> list[str]:
    """Tables whose partition holds the same data as another delivery's (equal data hash)."""
    same = same_data_elsewhere(layout, delivery, {r["table"]: r for r in records}, index)
    if not same:
        return []
    lines = ["", "## Same data as other deliveries", ""]
    lines += [
        f"- `{table}`: the same data as {', '.join(keys)} (equal data hash, provenance left out)"
        for table, keys in same.items()
    ]
    return lines


def verification_section(
    layout: LakeLayout,
    delivery: Delivery,
    asset: str | None = None,
    index: LineageIndex | None = None,
) -> list[str]:
    """What `clinical-platform verify` says now: every file and record unchanged, or what is
    not (one line each)."""
    lines = ["", "## Verification", ""]
    try:
        found = verify_delivery(layout, delivery, asset, index)
    except Exception as error:  # noqa: BLE001 - the dossier says it, and goes on
        return [*lines, f"**Not verified**: {error}"]
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if found.holds:
        return [*lines, f"{found.summary} (at {stamp})."]
    lines.append(f"**{found.summary}** (at {stamp}):")
    return [*lines, "", *[f"- {problem}" for problem in found.problems]]


# Where on AWS, as the launcher learnt it after submitting (see spark_jobs.runtime.submission).
AWS_FIELDS = (
    "emr_cluster_id",
    "emr_step_id",
    "emr_serverless_application_id",
    "emr_serverless_job_run_id",
    "submission",
)


def aws_where(record: dict[str, Any]) -> str:
    """ ", EMR cluster `j-…` step `s-…`" (or the Serverless job run) when the record has it."""
    named = [f"{name.replace('_', ' ')} `{record[name]}`" for name in AWS_FIELDS if name in record]
    return f"; {', '.join(named)}" if named else ""


def _short(value: Any, width: int = 12) -> str:
    text = "" if value is None else str(value)
    return text[:width]


def render_dossier(layout: LakeLayout, delivery: Delivery, asset: str | None = None) -> str:
    """Markdown dossier: manifest, rejected files, then per asset its lineage and checks (of
    one asset and what it was computed from, when `asset` is given)."""
    shown_assets = {o.asset_key for o in computed_from(asset)} if asset is not None else None
    lines = [f"# Audit dossier — {delivery.key}" + (f", {asset}" if asset else ""), ""]
    landing = layout.landing(delivery)
    shown = local_path(landing) if landing.startswith("file:") else landing
    lines += ["## Delivery as landed", "", f"Landing folder: `{shown}`", ""]
    manifest = read_manifest(layout, delivery)
    if manifest is not None:
        lines += [f"Landed at {manifest.get('landed_at')} with manifest `{MANIFEST_NAME}`.", ""]
        if manifest.get("duplicate_of"):
            lines += [
                f"**Duplicate delivery**: the same files, byte for byte, as "
                f"{manifest['duplicate_of']} (landed with --allow-duplicate).",
                "",
            ]
        lines += [
            "| file | bytes | sha256 |",
            "|---|---:|---|",
        ]
        lines += [f"| {f['name']} | {f['size']} | `{f['sha256']}` |" for f in manifest["files"]]
    else:
        lines.append("No delivery manifest: the delivery was not landed through the platform.")
    rejected = rejected_files(layout, delivery)
    lines += ["", "## Rejected files", ""]
    if rejected:
        lines += ["| file | dataset | reason |", "|---|---|---|"]
        lines += [f"| {r['file']} | {r.get('dataset') or '-'} | {r['reason']} |" for r in rejected]
    else:
        lines.append("None.")

    index = lineage_index(layout)
    records = partition_records(layout, delivery, index)
    if shown_assets is not None:
        records = [r for r in records if r["asset"] in shown_assets]
    lines += verification_section(layout, delivery, asset, index)
    lines += files_section(records)
    lines += [
        "",
        "## Assets",
        "",
        "| asset | status | rows in | rows out | quarantined | collapsed | content hash "
        "| data hash | run | Spark application | code version |",
        "|---|---|---:|---:|---:|---:|---|---|---|---|---|",
    ]
    for r in records:
        rows = r.get("rows") or {}
        lines.append(
            f"| {r['asset']} | {r['status']} | {rows.get('in', '')} | {rows.get('out', '')} "
            f"| {rows.get('quarantined', '')} | {rows.get('collapsed', '')} "
            f"| `{_short(r.get('content_hash'), 16)}` | `{_short(r.get('data_hash'), 16)}` "
            f"| `{_short(r.get('run_id'), 8)}` "
            f"| {r.get('spark_application_id', '')} | `{_short(r.get('code_version'))}` |"
        )
    lines += same_data_section(layout, delivery, records, index)
    for r in records:
        lines += [
            "",
            f"### {r['asset']}",
            "",
            f"- produced at {r.get('produced_at')} by `{r.get('launcher')}` (Spark "
            f"application `{r.get('spark_application_id')}`, run `{r.get('run_id')}`), "
            f"started by `{r.get('started_by', 'not recorded')}`, git `{r.get('git_sha')}`, "
            f"logs `{r.get('log_location') or 'not recorded'}`" + aws_where(r),
            f"- table `{r.get('table')}` snapshot `{r.get('snapshot_id')}`; this record's sha256 "
            f"`{r.get('record_sha256')}`",
        ]
        if r.get("reason"):
            lines.append(f"- reason: {r['reason']}")
        for source in r.get("sources", []):
            lines.append(
                f"- source `{source.get('uri')}` ({source.get('size')} bytes, sha256 "
                f"`{source.get('sha256')}`, {source.get('rows')} rows)"
            )
        for upstream in r.get("inputs", []):
            lines.append(
                f"- input {upstream.get('asset')} {upstream.get('partition')} "
                f"(content `{_short(upstream.get('content_hash'), 16)}`, run "
                f"`{_short(upstream.get('run_id'), 8)}`)"
            )
        checks = r.get("checks", [])
        if checks:
            failed = [c for c in checks if not c.get("passed")]
            summary = ", ".join(f"{c['check']} ({c.get('effect', '')})" for c in failed)
            lines.append(
                f"- checks: {len(checks) - len(failed)} of {len(checks)} passed"
                + (f"; not passed: {summary}" if failed else "")
            )
            for c in failed:
                said = c.get("metadata", {}).get("summary") or c.get("metadata", {}).get("reason")
                if said:
                    lines.append(f"  - {c['check']}: {said}")
    return "\n".join(lines) + "\n"


# What the JSON dossier keeps of each record, besides its checks.
RECORD_FIELDS = (
    "partition",
    "status",
    "reason",
    "rows",
    "content_hash",
    "data_hash",
    "snapshot_id",
    "code_version",
    "git_sha",
    "launcher",
    "spark_application_id",
    "run_id",
    "started_by",
    "log_location",
    *AWS_FIELDS,
    "produced_at",
    "record_sha256",
)


def file_dispositions(
    index: LineageIndex, delivery: Delivery, family: str = CLINICAL_FAMILY
) -> dict[str, str]:
    """Per landed file, what ingest did with it, from the raw records' accounting: accepted
    (ingested into raw), rejected, skipped (documentation, unknown) or not ingested (not asked
    for); empty when no raw partition of the delivery is committed."""
    raw = (index.latest(o.table, delivery) for o in asset_outputs(family) if o.zone is Zone.RAW)
    accounting = next((r["delivery_files"] for r in raw if r and r.get("delivery_files")), None)
    if accounting is None:
        return {}
    found = {name: "accepted" for name in accounting["accepted"]}
    found |= {r["file"]: "rejected" for r in accounting["rejected"]}
    found |= {r["file"]: "skipped" for r in accounting["skipped"]}
    return found | {name: "not ingested" for name in accounting.get("not_ingested", [])}


def asset_dossier(layout: LakeLayout, delivery: Delivery, asset: str) -> dict[str, Any]:
    """The dossier of one asset's partition as data: every partition it was computed from
    (walking the inputs each record names, earlier deliveries included), the landed files it
    was computed from and those it was not, every check result, and the verify result."""
    # A ValueError naming the assets when it is none of them; its family's landing and files.
    layout = replace(layout, family=asset_output(asset).family)
    by_key = {o.asset_key: o for o in every_asset_output()}
    index = lineage_index(layout)
    hops: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    pending = [(asset, delivery.key)]
    while pending:
        key, partition = pending.pop(0)
        if (key, partition) in seen or key not in by_key:
            continue
        seen.add((key, partition))
        record = index.latest(by_key[key].table, Delivery.from_key(partition))
        if record is None:
            hops.append({"asset": key, "partition": partition, "status": "not committed"})
            continue
        hop = {"asset": key, **{f: record[f] for f in RECORD_FIELDS if f in record}}
        hop["checks"] = record.get("checks", [])
        inputs = record.get("inputs", [])
        hop["inputs"] = [f"{i.get('asset')} {i.get('partition')}" for i in inputs]
        hops.append(hop)
        pending += [(i.get("asset"), i.get("partition")) for i in inputs]
        if by_key[key].zone is Zone.RAW:
            hop["sources"] = [s for s in record.get("sources", []) if s.get("accepted", True)]
    used = {(h["partition"], s["name"]): s["sha256"] for h in hops for s in h.get("sources", [])}
    manifest = read_manifest(layout, delivery) or {"files": []}
    disposition = file_dispositions(index, delivery, layout.family)
    landed = [
        {
            "name": f["name"],
            "size": f["size"],
            "sha256": f["sha256"],
            # What ingest did with it (accepted = ingested into raw), and whether this asset
            # was computed from it.
            "disposition": disposition.get(f["name"], "not accounted for"),
            "ingested": disposition.get(f["name"]) == "accepted",
            "computed_from": (delivery.key, f["name"]) in used,
        }
        for f in manifest["files"]
    ]
    found = verify_delivery(layout, delivery, asset, index)
    return {
        "delivery": delivery.key,
        "asset": asset,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "computed_from": [
            {"partition": partition, "file": name, "sha256": digest}
            for (partition, name), digest in sorted(used.items())
        ],
        "landed_files": landed,
        "assets": hops,
        "verification": {
            "holds": found.holds,
            "summary": found.summary,
            "problems": found.problems,
        },
    }


def write_dossier(layout: LakeLayout, delivery: Delivery) -> str:
    """Render the delivery's dossier to its place in the lake (local or S3); return the URI.

    Written whole or not at all: locally through a hidden file and a rename, on S3 by one PUT.
    """
    uri = layout.dossier(delivery)
    text = render_dossier(layout, delivery).encode("utf-8")
    if uri.startswith("file:"):
        path = Path(local_path(uri))
        path.parent.mkdir(parents=True, exist_ok=True)
        hidden = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        hidden.write_bytes(text)
        hidden.replace(path)
        return str(path)
    import boto3

    from clinical_platform.launchers.aws import S3Uri

    where = S3Uri.parse(uri)
    boto3.client("s3").put_object(
        Bucket=where.bucket, Key=where.key, Body=text, ContentType="text/markdown"
    )
    return uri
