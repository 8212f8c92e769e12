"""Dataset contracts: the single source of truth for columns, keys and data-quality rules."""

from __future__ import annotations

import re
from collections.abc import Iterable

from spark_jobs.contracts.features import FEATURE_CONTRACTS, SUBJECT_PROFILE, FeatureContract
from spark_jobs.contracts.layout import CLINICAL_FAMILY
from spark_jobs.contracts.model import (
    Column,
    ColumnType,
    DatasetContract,
    Effect,
    Level,
    PlausibleRange,
    Rule,
    RuleKind,
)
from spark_jobs.contracts.omics import OMICS_CONTRACTS, OMICS_FAMILY
from spark_jobs.contracts.sdtm import SDTM_CONTRACTS
from spark_jobs.contracts.sensor import SENSOR, SENSOR_FAMILY
from spark_jobs.contracts.studies import STUDY_OVERRIDES

__all__ = [
    "FEATURE_CONTRACTS",
    "SDTM_CONTRACTS",
    "STUDY_OVERRIDES",
    "SUBJECT_PROFILE",
    "Column",
    "ColumnType",
    "DatasetContract",
    "Effect",
    "FeatureContract",
    "Level",
    "PlausibleRange",
    "Rule",
    "RuleKind",
    "contract_for",
    "domain_of_file",
    "family_contracts",
    "sdtm_contract",
]

# The source families and their datasets, in processing order (DM first: the other SDTM
# domains check their subjects against it).
FAMILY_CONTRACTS: dict[str, tuple[DatasetContract, ...]] = {
    CLINICAL_FAMILY: SDTM_CONTRACTS,
    SENSOR_FAMILY: (SENSOR,),
    OMICS_FAMILY: OMICS_CONTRACTS,
}
# SDTM split datasets: the domain code plus up to two letters (lbch, lbhe, qscg ...).
_SPLIT_DATASET = re.compile(r"^([a-z]{2})[a-z0-9]{0,2}$")


def family_contracts(family: str) -> tuple[DatasetContract, ...]:
    """The datasets of a source family; a clear error for an unknown family."""
    try:
        return FAMILY_CONTRACTS[family]
    except KeyError:
        known = sorted(FAMILY_CONTRACTS)
        raise KeyError(f"no source family {family!r}; known: {known}") from None


def sdtm_contract(name: str, family: str = CLINICAL_FAMILY) -> DatasetContract:
    """The default contract of a dataset of a family by its lower-case name."""
    by_name = {c.name: c for c in family_contracts(family)}
    try:
        return by_name[name]
    except KeyError:
        known = sorted(by_name)
        raise KeyError(f"no contract for {family} dataset {name!r}; known: {known}") from None


def contract_for(name: str, study: str, family: str = CLINICAL_FAMILY) -> DatasetContract:
    """The contract of a dataset with the study's configured rule effects applied."""
    contract = sdtm_contract(name, family)
    overrides = STUDY_OVERRIDES.get(study, {}).get(name)
    return contract.with_effects(overrides) if overrides else contract


def domain_of_file(file_name: str, family: str = CLINICAL_FAMILY) -> str | None:
    """The dataset a landing file belongs to (`lbch.xpt` -> `lb`), or None if unknown. A
    family whose one dataset names no file stems (sensor) takes every file."""
    contracts = family_contracts(family)
    if len(contracts) == 1 and not contracts[0].file_stems:
        return contracts[0].name
    by_name = {c.name for c in contracts}
    stem = file_name.rsplit("/", 1)[-1].split(".", 1)[0].lower()
    if stem in by_name:
        return stem
    # A batch's files name their dataset first: counts_batch1.parquet, samples_batch1.csv.
    for contract in contracts:
        if any(stem.startswith(f"{s}_") for s in contract.file_stems if len(s) > 2):
            return contract.name
    match = _SPLIT_DATASET.match(stem)
    if match and match.group(1) in by_name:
        return match.group(1)
    return None


# File types that carry a dataset's rows (a file's domain is its name's stem).
DATA_EXTENSIONS = ("xpt", "csv", "parquet")
# Names a transfer tool or an editor leaves behind: never data, never silently dropped.
TEMPORARY_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".swp", "~")


def skip_reason(file_name: str) -> str | None:
    """Why a landing file is skipped rather than ingested or rejected, if it is."""
    if file_name.startswith("."):
        return "hidden file (name starts with a dot); kept in landing, not ingested"
    lowered = file_name.lower()
    if lowered.endswith(TEMPORARY_SUFFIXES) or "_copying_" in lowered or file_name.startswith("~$"):
        return "temporary file of a transfer or an editor; kept in landing, not ingested"
    return None


def carried_datasets(file_names: Iterable[str], family: str = CLINICAL_FAMILY) -> list[str]:
    """The datasets a delivery carries: those it has a data file of (broken or not), in
    contract order. Skipped files (hidden, temporary) carry nothing."""
    found = {
        domain_of_file(n, family)
        for n in file_names
        if skip_reason(n) is None and n.rsplit(".", 1)[-1].lower() in DATA_EXTENSIONS
    }
    return [c.name for c in family_contracts(family) if c.name in found]
