"""What a stage's Spark application reported, told to Dagster: for one delivery with blocking
checks that block only their own asset, and for several deliveries per partition.

A blocking check that fails (a refused file, a failed reconciliation) means its asset was not
committed. Yielded, Dagster would fail the whole multi-asset step and skip every asset of the
later stages; so the evaluation is logged instead, and the asset yields no output, which makes
Dagster skip exactly the assets that read it (`delivery_events`).

With `BackfillPolicy.single_run()` a backfill hands each stage's step every delivery of its range
(`context.partition_keys`); the job commits each delivery on its own and reports each one's
results as Pipes custom messages (`DeliveryResult`). Dagster 1.13 records an output of such a
step as one materialization per partition of the range, and has no result for one partition of
a step (dagster-io/dagster#17836), so:

- each delivery's check results are logged as `AssetCheckEvaluation(partition=...)`; logged, not
  yielded, because a yielded failing blocking check fails the whole step, and with it the next
  stage of every other delivery;
- when the job succeeded, each asset is yielded once and each partition gets its own metadata
  through `add_asset_metadata(partition_key=...)`: one materialization per asset and delivery.
  A delivery that did not commit the asset (a blocked domain, one it does not carry) is
  recorded with status `not committed` and why: once the asset is yielded, Dagster gives every
  partition of the range a materialization;
- when the job failed (a delivery failed with an error), no output is yielded (it would mark
  the failed deliveries materialized): each committed partition is yielded as an
  `AssetMaterialization(partition=...)`, then the step fails.

Dagster keeps one data version per output, not per partition: the yielded asset's version is a
hash of its deliveries' content hashes, and each delivery's own is its `content_hash` metadata.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from clinical_platform.launchers.base import DeliveryResult, Result, SparkRun

StepEvent = Result | dg.AssetMaterialization | dg.AssetCheckEvaluation | dg.Output
NOT_COMMITTED = "not committed"


def stage_results(context: dg.AssetExecutionContext, run: SparkRun) -> Iterator[StepEvent]:
    """What a stage's step yields: the job's results as reported for one delivery, and per
    partition for several."""
    if len(context.partition_keys) == 1:
        yield from delivery_events(context, run)
    else:
        yield from partition_events(context, run)


def delivery_events(context: dg.AssetExecutionContext, run: SparkRun) -> Iterator[StepEvent]:
    """One delivery's results, with a blocking check that fails blocking only its own asset.

    Dagster fails the whole step on a yielded failing blocking check, which would skip every
    asset downstream of the stage (features for a refused SV it never reads). Such a result is
    logged instead, and its asset, which the job did not commit, yields no output: Dagster then
    skips exactly the assets that read it, and the step goes on with the others.
    """
    for result in run.outputs():
        if isinstance(result, dg.AssetCheckResult) and blocks(context, result):
            evaluation = check_evaluation(context, context.partition_key, result)
            context.log.error(
                f"{evaluation.asset_key.to_user_string()} not committed: blocking check "
                f"{evaluation.check_name} failed; the assets that read it are skipped"
            )
            context.log_event(evaluation)  # pyright: ignore[reportArgumentType]
            key = evaluation.asset_check_key
            yield dg.Output(
                None, output_name=context.assets_def.get_output_name_for_asset_check_key(key)
            )
        else:
            yield result


def blocks(context: dg.AssetExecutionContext, result: dg.AssetCheckResult) -> bool:
    """Whether a check result is a failure that Dagster would block on."""
    if result.passed or result.severity != dg.AssetCheckSeverity.ERROR:
        return False
    assert result.asset_key is not None and result.check_name is not None
    key = dg.AssetCheckKey(result.asset_key, result.check_name)
    return context.assets_def.get_spec_for_check_key(key).blocking


def partition_events(context: dg.AssetExecutionContext, run: SparkRun) -> Iterator[StepEvent]:
    """One materialization per asset and delivery, and each delivery's own check results."""
    reported = [r for r in run.results if isinstance(r, DeliveryResult)]
    evaluations = [
        check_evaluation(context, r.partition, r.result)
        for r in reported
        if isinstance(r.result, dg.AssetCheckResult)
    ]
    committed = {
        (r.result.asset_key, r.partition): r.result
        for r in reported
        if isinstance(r.result, dg.MaterializeResult) and r.result.asset_key is not None
    }
    if run.failure:
        yield from evaluations  # the step fails anyway: yielded, so none is lost
        for (asset, partition), result in committed.items():
            yield dg.AssetMaterialization(asset, partition=partition, metadata=result.metadata)
        raise dg.Failure(description=run.failure, metadata=dict(run.details), allow_retries=False)
    for evaluation in evaluations:
        # log_event takes check evaluations (its body has the branch); its annotation omits them.
        context.log_event(evaluation)  # pyright: ignore[reportArgumentType]
    for asset in dict.fromkeys(asset for asset, _ in committed):
        results = {p: r for (a, p), r in committed.items() if a == asset}
        for partition in context.partition_keys:
            result = results.get(partition)
            metadata = (
                (result.metadata or {}) if result else not_committed(asset, partition, evaluations)
            )
            context.add_asset_metadata(metadata, asset_key=asset, partition_key=partition)
        yield dg.MaterializeResult(asset_key=asset, data_version=step_data_version(results))
    for check in dict.fromkeys(e.asset_check_key for e in evaluations):
        yield dg.Output(
            None, output_name=context.assets_def.get_output_name_for_asset_check_key(check)
        )


def check_evaluation(
    context: dg.AssetExecutionContext, partition: str, result: dg.AssetCheckResult
) -> dg.AssetCheckEvaluation:
    """A delivery's check result as the evaluation of its partition."""
    assert result.asset_key is not None and result.check_name is not None
    key = dg.AssetCheckKey(result.asset_key, result.check_name)
    return dg.AssetCheckEvaluation(
        asset_key=result.asset_key,
        check_name=result.check_name,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
        blocking=context.assets_def.get_spec_for_check_key(key).blocking,
        partition=partition,
    )


def not_committed(
    asset: dg.AssetKey, partition: str, evaluations: Sequence[dg.AssetCheckEvaluation]
) -> dict[str, Any]:
    """The metadata of a partition the job committed nothing of, with why."""
    reasons = []
    for evaluation in evaluations:
        if (evaluation.asset_key, evaluation.partition) != (asset, partition):
            continue
        if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
            continue
        reason = evaluation.metadata.get("reason")
        detail = f": {getattr(reason, 'value', reason)}" if reason is not None else ""
        reasons.append(f"{evaluation.check_name} failed{detail}")
    why = "; ".join(reasons) or "nothing was reported for this delivery: it does not carry it"
    return {"status": NOT_COMMITTED, "reason": why}


def step_data_version(results: Mapping[str, dg.MaterializeResult]) -> dg.DataVersion | None:
    """One version for the step's output: a hash of its deliveries' own data versions."""
    versions = sorted(
        f"{partition}={result.data_version.value}"
        for partition, result in results.items()
        if result.data_version is not None
    )
    if not versions:
        return None
    return dg.DataVersion(hashlib.sha256("\n".join(versions).encode("utf-8")).hexdigest())
