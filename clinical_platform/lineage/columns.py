"""Column lineage of one delivery: a column of an asset walked back to the landed file.

What feeds what comes from the contracts (`DatasetOutput.column_lineage`, the same declaration
Dagster shows as `dagster/column_lineage`); which partition each hop read, and which files raw
was ingested from, come from the delivery's lineage records. A feature built from partial
deliveries reads some domains from earlier deliveries: the walk follows the partitions its
record names, not the delivery it started from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clinical_platform.lake import delivery_records
from spark_jobs.contracts.layout import Delivery, LakeLayout
from spark_jobs.contracts.outputs import DatasetOutput, Zone, every_asset_output

_OUTPUTS = {o.asset_key: o for o in every_asset_output()}


class ColumnLineageError(ValueError):
    """An asset or column the contracts do not declare."""


@dataclass(frozen=True)
class ColumnHop:
    """A column of an asset's partition, and the columns it was computed from."""

    asset: str
    column: str
    partition: str
    committed: bool  # whether the lake holds a committed record of that partition
    upstream: tuple[ColumnHop, ...] = ()
    # Raw only: the landed files the column was read from (name, uri, size, sha256).
    files: tuple[Mapping[str, Any], ...] = field(default=())


def column_owner(column: str, asset: str | None = None, family: str | None = None) -> DatasetOutput:
    """The asset whose column is asked for: `asset`, or the first one of the family (any, when
    none is named), features first, that has a column of that name."""
    if asset is not None:
        found = _OUTPUTS.get(asset)
        if found is None:
            raise ColumnLineageError(f"no asset {asset!r}; assets are {', '.join(_OUTPUTS)}")
        if column not in {c.name for c in found.columns}:
            names = ", ".join(c.name for c in found.columns)
            raise ColumnLineageError(f"{asset} has no column {column!r}; its columns: {names}")
        return found
    for zone in (Zone.FEATURES, Zone.CURATED, Zone.RAW):
        for output in _OUTPUTS.values():
            if family is not None and output.family != family:
                continue
            if output.zone is zone and column in {c.name for c in output.columns}:
                return output
    raise ColumnLineageError(f"no asset has a column {column!r}")


class _Records:
    """Lineage records by delivery, each delivery read once."""

    def __init__(self, layout: LakeLayout) -> None:
        self.layout = layout
        self.by_delivery: dict[str, dict[str, dict[str, Any]]] = {}

    def get(self, asset: str, partition: str) -> dict[str, Any] | None:
        if partition not in self.by_delivery:
            found = delivery_records(self.layout, Delivery.from_key(partition))
            self.by_delivery[partition] = {
                o.asset_key: found[o.table] for o in _OUTPUTS.values() if o.table in found
            }
        return self.by_delivery[partition].get(asset)


def trace_column(
    layout: LakeLayout, delivery: Delivery, column: str, asset: str | None = None
) -> ColumnHop:
    """The column of the delivery's partition of `asset` (or of the asset that has it), with
    every column upstream of it down to the variables of the landed files."""
    records = _Records(layout)
    return _hop(records, column_owner(column, asset, layout.family), column, delivery.key)


def _hop(records: _Records, output: DatasetOutput, column: str, partition: str) -> ColumnHop:
    record = records.get(output.asset_key, partition)
    if output.zone is Zone.RAW:
        sources = record.get("sources", []) if record else []
        files = tuple(s for s in sources if s.get("accepted", True))
        return ColumnHop(output.asset_key, column, partition, record is not None, files=files)
    read = {i.get("asset"): i.get("partition") for i in (record or {}).get("inputs", [])}
    upstream = tuple(
        _hop(
            records,
            _OUTPUTS[ref.asset_key],
            ref.column,
            str(read.get(ref.asset_key) or partition),
        )
        for ref in output.column_lineage.get(column, ())
    )
    return ColumnHop(output.asset_key, column, partition, record is not None, upstream)


def landed_variables(hop: ColumnHop) -> list[tuple[str, Mapping[str, Any]]]:
    """Every (variable, landed file) the column comes from, each once, by file and variable."""

    def collect(node: ColumnHop) -> list[tuple[str, Mapping[str, Any]]]:
        pairs = [(node.column, file) for file in node.files]
        return pairs + [pair for upstream in node.upstream for pair in collect(upstream)]

    found: list[tuple[str, Mapping[str, Any]]] = []
    for pair in collect(hop):
        if pair not in found:
            found.append(pair)
    return sorted(found, key=lambda pair: (str(pair[1].get("name")), pair[0]))


def render_column_lineage(hop: ColumnHop) -> list[str]:
    """Markdown: the walk as a nested list, ending at each variable of each landed file."""
    lines = ["", f"## Column lineage of {hop.asset}.{hop.column}", ""]

    def walk(node: ColumnHop, depth: int) -> None:
        indent = "  " * depth
        state = "" if node.committed else ", not committed"
        lines.append(f"{indent}- `{node.asset}.{node.column}` ({node.partition}{state})")
        for file in node.files:
            lines.append(
                f"{indent}  - variable `{node.column}` of `{file.get('name')}` "
                f"({file.get('size')} bytes, sha256 `{file.get('sha256')}`, `{file.get('uri')}`)"
            )
        for upstream in node.upstream:
            walk(upstream, depth + 1)

    walk(hop, 0)
    variables = landed_variables(hop)
    lines += [
        "",
        f"From {len(variables)} variable(s) as landed: "
        + ", ".join(f"{file.get('name')}:{variable}" for variable, file in variables)
        + ".",
    ]
    return lines


def column_lineage_data(hop: ColumnHop) -> dict[str, Any]:
    """The walk as data, for the JSON and HTML dossiers: each hop with its upstream hops and,
    at raw, the landed files; then every (file, variable, sha256) it ends at."""

    def node(hop: ColumnHop) -> dict[str, Any]:
        return {
            "asset": hop.asset,
            "column": hop.column,
            "partition": hop.partition,
            "committed": hop.committed,
            "files": [dict(f) for f in hop.files],
            "upstream": [node(u) for u in hop.upstream],
        }

    return {
        **node(hop),
        "landed_variables": [
            {"file": file.get("name"), "variable": variable, "sha256": file.get("sha256")}
            for variable, file in landed_variables(hop)
        ],
    }
