"""OpenLineage run events for every materialization, so the platform plugs into Marquez or
DataHub. Off unless configured: `OPENLINEAGE_URL`, `OPENLINEAGE_CONFIG` (a YAML file) or
`OPENLINEAGE__TRANSPORT__*` variables (for example a file transport), as openlineage-python
reads them.

One OpenLineage run per asset and delivery of a step: START when the step starts, then
COMPLETE for each partition the job committed, FAIL for each it did not, with why. Datasets
are the Iceberg tables (namespace: the lake root); outputs carry their schema and column
lineage, both from the kernel's declared outputs, the same declaration Dagster shows.
An event that cannot be sent is logged and never fails the step.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from spark_jobs.contracts.outputs import DatasetOutput, every_asset_output

PRODUCER = "https://github.com/clinical-platform/clinical-platform"
NAMESPACE = "clinical-platform"
_OUTPUTS = {o.asset_key: o for o in every_asset_output()}


def configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the user asked for OpenLineage events (and did not disable them)."""
    if environ.get("OPENLINEAGE_DISABLED", "").lower() in ("1", "true"):
        return False
    return bool(
        environ.get("OPENLINEAGE_URL")
        or environ.get("OPENLINEAGE_CONFIG")
        or any(name.startswith("OPENLINEAGE__TRANSPORT") for name in environ)
    )


class StepLineage:
    """The OpenLineage runs of one Dagster step: its assets on its deliveries."""

    def __init__(
        self, dagster_run_id: str, lake_root: str, assets: Sequence[str], partitions: Sequence[str]
    ) -> None:
        from openlineage.client import OpenLineageClient

        self.client = OpenLineageClient()
        self.dagster_run_id = dagster_run_id
        self.lake_root = lake_root
        self.assets = [a for a in assets if a in _OUTPUTS]
        self.partitions = list(partitions)

    def run_id(self, asset: str, partition: str) -> str:
        """The same id for an asset's START and its end, unique per Dagster run and partition."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.dagster_run_id}/{asset}/{partition}"))

    def start(self) -> None:
        for asset in self.assets:
            for partition in self.partitions:
                self._emit("START", asset, partition)

    def finish(self, committed: Iterable[tuple[str, str]], failure: str | None) -> None:
        """COMPLETE for each (asset, partition) committed; FAIL for the others, with why."""
        done = set(committed)
        for asset in self.assets:
            for partition in self.partitions:
                if (asset, partition) in done:
                    self._emit("COMPLETE", asset, partition)
                else:
                    why = failure or "the job did not commit this partition (see its checks)"
                    self._emit("FAIL", asset, partition, why)

    def _emit(self, state: str, asset: str, partition: str, error: str | None = None) -> None:
        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
        from openlineage.client.facet_v2 import error_message_run

        output = _OUTPUTS[asset]
        facets: dict[str, Any] = {}
        if error is not None:
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=error, programmingLanguage="python"
            )
        event = RunEvent(
            eventType=RunState[state],
            eventTime=dt.datetime.now(dt.UTC).isoformat(),
            producer=PRODUCER,
            run=Run(runId=self.run_id(asset, partition), facets=facets),
            job=Job(namespace=NAMESPACE, name=f"{asset}/{partition}"),
            inputs=[self._input(key) for key in output.inputs if key in _OUTPUTS],
            outputs=[self._output(output)],
        )
        self.client.emit(event)

    def _input(self, asset: str) -> Any:
        from openlineage.client.event_v2 import InputDataset

        return InputDataset(namespace=self.lake_root, name=_OUTPUTS[asset].table)

    def _output(self, output: DatasetOutput) -> Any:
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.facet_v2 import column_lineage_dataset, schema_dataset

        schema = schema_dataset.SchemaDatasetFacet(
            fields=[
                schema_dataset.SchemaDatasetFacetFields(name=c.name, type=c.type)
                for c in output.columns
            ]
        )
        fields = {
            column: column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(
                        namespace=self.lake_root,
                        name=_OUTPUTS[ref.asset_key].table,
                        field=ref.column,
                    )
                    for ref in refs
                    if ref.asset_key in _OUTPUTS
                ]
            )
            for column, refs in output.column_lineage.items()
            if refs
        }
        facets: dict[str, Any] = {"schema": schema}
        if fields:
            facets["columnLineage"] = column_lineage_dataset.ColumnLineageDatasetFacet(fields)
        return OutputDataset(namespace=self.lake_root, name=output.table, facets=facets)
