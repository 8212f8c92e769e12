"""Asset check specs of the clinical family, generated from the dataset contracts.

The Spark jobs evaluate these checks in the same pass that writes the data and report them
through Pipes; here they are only declared, so the UI lists every rule of every dataset.
"""

from __future__ import annotations

import dagster as dg

from spark_jobs.contracts import SDTM_CONTRACTS, SUBJECT_PROFILE, DatasetContract, RuleKind


def raw_asset_key(contract: DatasetContract) -> dg.AssetKey:
    return dg.AssetKey(f"raw_{contract.name}")


def curated_asset_key(contract: DatasetContract) -> dg.AssetKey:
    return dg.AssetKey(f"curated_{contract.name}")


FEATURES_KEY = dg.AssetKey(f"features_{SUBJECT_PROFILE.name}")


def raw_check_specs() -> list[dg.AssetCheckSpec]:
    """Raw keeps a faithful copy, so it only reports whether files could be read at all.

    Not blocking on purpose: a failing blocking check fails the whole multi-asset step, which
    would stop the good domains of a delivery too. The same rule blocks in curated instead.
    """
    return [
        dg.AssetCheckSpec(
            name=RuleKind.FILES_READABLE.value,
            asset=raw_asset_key(contract),
            description=contract.rule(RuleKind.FILES_READABLE.value).description,
            blocking=False,
        )
        for contract in SDTM_CONTRACTS
    ]


def curated_check_specs() -> list[dg.AssetCheckSpec]:
    """Every rule of every SDTM contract; file-level and reconciliation rules block."""
    return [
        dg.AssetCheckSpec(
            name=rule.name,
            asset=curated_asset_key(contract),
            description=f"[{rule.effect.value}] {rule.description}",
            blocking=rule.blocking,
        )
        for contract in SDTM_CONTRACTS
        for rule in contract.rules
    ]


def feature_check_specs() -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            name=rule.name, asset=FEATURES_KEY, description=rule.description, blocking=rule.blocking
        )
        for rule in SUBJECT_PROFILE.rules
    ]
