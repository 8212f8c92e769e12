"""What every job writes: zones, output schemas, asset keys, check names and column lineage.

The input side of a dataset (columns, keys, rules) is its contract; this module derives the
output side from it, once. The Spark jobs write exactly these schemas and refuse to write
anything else (`schema_differences`); Dagster declares the same schemas, keys, checks and
dependencies as assets. Nothing here imports Spark or Dagster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from spark_jobs.contracts.features import FEATURE_CONTRACTS, FeatureContract
from spark_jobs.contracts.layout import CLINICAL_FAMILY, REJECTED_FILES_DATASET, Zone
from spark_jobs.contracts.model import ColumnType, DatasetContract, RuleKind
from spark_jobs.contracts.omics import COUNTS, OMICS_FAMILY, OMICS_TOP_GENES, SAMPLES
from spark_jobs.contracts.sdtm import SDTM_CONTRACTS
from spark_jobs.contracts.sensor import SENSOR, SENSOR_DAILY, SENSOR_FAMILY
from spark_jobs.contracts.tables import PARTITION_COLUMNS, fingerprint, table_name

# ---- column names the jobs add to the data ------------------------------------------------

SOURCE_URI = "_source_uri"
SOURCE_ROW = "_source_row"
SOURCE_SHA256 = "_source_sha256"
DELIVERY = "_delivery"
INGESTED_RUN_ID = "_ingested_run_id"
CURATED_RUN_ID = "_curated_run_id"
FEATURIZED_RUN_ID = "_featurized_run_id"
FLAGS = "_flags"
FLAG_DETAILS = "_flag_details"
DUPLICATES_COLLAPSED = "_duplicates_collapsed"
NATURAL_KEY = "_natural_key"
REJECT_REASONS = "_reject_reasons"
REJECT_DETAILS = "_reject_details"

# The checks of the raw assets: files_readable (the same rule blocks in curated), and two
# warnings about what arrived.
FILES_READABLE = RuleKind.FILES_READABLE.value
CONTRACT_COLUMNS = "contract_columns"
DIRECT_IDENTIFIERS = "direct_identifiers"
# Columns that differ between two runs over the same input; left out of content hashes.
RUN_SPECIFIC_COLUMNS = frozenset({INGESTED_RUN_ID, CURATED_RUN_ID, FEATURIZED_RUN_ID})
CURRENT_SUFFIX = "_current"


def data_columns(names: Iterable[str]) -> list[str]:
    """The columns a data hash covers: what was delivered or derived from it, without
    provenance, run ids or partition columns, so equal data is recognisable across deliveries."""
    return [n for n in names if not n.startswith("_") and n not in PARTITION_COLUMNS]


def date_column(name: str) -> str:
    """The parsed date of an ISO 8601 column (set only when the day is known)."""
    return f"{name}_DATE"


def precision_column(name: str) -> str:
    """How much of an ISO 8601 value is known: year, month, day, hour, minute or second."""
    return f"{name}_PRECISION"


# ---- the model --------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputColumn:
    """One column of an output as written to Parquet (`type` is Spark's simpleString).

    `delivered` columns hold values exactly as the delivery had them: present only when the
    files had them, typed as the files typed them. Their declared type is that of a SAS XPORT
    delivery (numeric -> double, character -> string), the standard SDTM transport.
    """

    name: str
    type: str
    description: str = ""
    delivered: bool = False


@dataclass(frozen=True)
class ColumnRef:
    """A column of another asset, for column lineage."""

    asset_key: str
    column: str


@dataclass(frozen=True)
class OutputCheck:
    """An asset check the job reports for an output; `name` is the Dagster check name."""

    name: str
    description: str
    blocking: bool


@dataclass(frozen=True)
class DatasetOutput:
    """Everything both sides need to agree on about one dataset of one zone."""

    zone: Zone
    name: str  # dataset name inside the zone: "dm", "subject_profile"
    title: str
    description: str
    columns: tuple[OutputColumn, ...]
    checks: tuple[OutputCheck, ...] = ()
    inputs: tuple[str, ...] = ()  # asset keys read to produce it
    column_lineage: Mapping[str, tuple[ColumnRef, ...]] = field(default_factory=dict)
    family: str = CLINICAL_FAMILY

    @property
    def asset_key(self) -> str:
        """`<zone>_<dataset>`; also names quarantine records, which are not assets."""
        return asset_key(self.zone, self.name)

    @property
    def is_asset(self) -> bool:
        return self.zone is not Zone.QUARANTINE

    @property
    def table(self) -> str:
        """The Iceberg table, `<zone>.<family>_<dataset>` (namespace.table in the catalog)."""
        return table_name(self.zone.value, self.family, self.name)

    @property
    def contract_version(self) -> str:
        """Changes whenever a declared column, type or check changes."""
        return fingerprint([self.columns, self.checks])

    @property
    def open_schema(self) -> bool:
        """Whether delivered columns may differ from the declaration (raw and quarantine)."""
        return any(c.delivered for c in self.columns)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def check_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks)

    def column(self, name: str) -> OutputColumn:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.asset_key}: no column {name} in its output schema")


def asset_key(zone: Zone, dataset: str) -> str:
    return f"{zone.value}_{dataset}"


# ---- provenance and system columns --------------------------------------------------------

PROVENANCE: tuple[OutputColumn, ...] = (
    OutputColumn(SOURCE_URI, "string", "Landing file the row came from"),
    OutputColumn(SOURCE_ROW, "bigint", "Row number inside that file (1-based)"),
    OutputColumn(SOURCE_SHA256, "string", "sha256 of that file"),
    OutputColumn(DELIVERY, "string", "Partition key STUDY/DELIVERY"),
    OutputColumn(INGESTED_RUN_ID, "string", "Dagster run that ingested the row"),
)
PROVENANCE_NAMES = tuple(c.name for c in PROVENANCE)
PARTITION = (
    OutputColumn(PARTITION_COLUMNS[0], "string", "Study of the delivery (table partition)"),
    OutputColumn(PARTITION_COLUMNS[1], "string", "Delivery id (table partition)"),
)
_FLAGGING = (
    OutputColumn(FLAGS, "array<string>", "Warn- and flag-level rules the row breaks"),
    OutputColumn(FLAG_DETAILS, "array<string>", "One line per flagged problem, rule first"),
    OutputColumn(DUPLICATES_COLLAPSED, "int", "Exact duplicates collapsed into this row"),
)
_CURATED_RUN = OutputColumn(CURATED_RUN_ID, "string", "Dagster run that curated the row")


def _delivered(contract: DatasetContract) -> tuple[OutputColumn, ...]:
    return tuple(
        OutputColumn(c.name, c.type.transport_type, c.label, delivered=True)
        for c in contract.columns
    )


def _typed(contract: DatasetContract) -> tuple[OutputColumn, ...]:
    """Contract columns typed per the contract; each ISO 8601 column followed by its parts."""
    columns: list[OutputColumn] = []
    for c in contract.columns:
        columns.append(OutputColumn(c.name, c.type.spark_sql, c.label))
        if c.type is ColumnType.DATETIME:
            columns += [
                OutputColumn(
                    date_column(c.name), "date", f"{c.name} as a date when the day is known"
                ),
                OutputColumn(
                    precision_column(c.name), "string", f"Precision of {c.name} (year ... second)"
                ),
            ]
    return tuple(columns)


# ---- outputs of an SDTM domain ------------------------------------------------------------


def raw_output(contract: DatasetContract) -> DatasetOutput:
    stems = "/".join(contract.file_stems)
    files = f"every {stems}* file" if stems else "every data file of the delivery"
    rule = contract.rule(RuleKind.FILES_READABLE.value)
    return DatasetOutput(
        zone=Zone.RAW,
        name=contract.name,
        title=f"{contract.title} as delivered",
        family=contract.family,
        description=f"{contract.title} ({contract.domain}) exactly as delivered: every column of "
        f"{files}, typed as in the file (SAS XPORT: numbers as double, text as "
        "string; CSV: all text), plus provenance (source file, row number, sha256). Nothing is "
        "dropped here.",
        columns=(*_delivered(contract), *PROVENANCE, *PARTITION),
        # Not blocking on purpose: a failing blocking check fails the whole multi-asset step,
        # which would stop the good domains of a delivery too. The same rule blocks in curated.
        checks=(
            OutputCheck(rule.name, rule.description, blocking=False),
            OutputCheck(
                CONTRACT_COLUMNS,
                "[warn] Names, per file, the contract columns the file lacks; curated holds "
                "nulls for them (a missing required column rejects the file instead)",
                blocking=False,
            ),
            OutputCheck(
                DIRECT_IDENTIFIERS,
                "[warn] Names the columns that look like direct identifiers (patient names, "
                "e-mail addresses, phone numbers, dates of birth), by column name and by value; "
                "they stay in raw only",
                blocking=False,
            ),
        ),
    )


def curated_output(contract: DatasetContract) -> DatasetOutput:
    raw_key = asset_key(Zone.RAW, contract.name)
    inputs = (raw_key, asset_key(Zone.RAW, "dm")) if contract.references_dm else (raw_key,)
    everything = tuple(ColumnRef(raw_key, c) for c in contract.column_names)
    lineage: dict[str, tuple[ColumnRef, ...]] = {}
    for c in contract.columns:
        lineage[c.name] = (ColumnRef(raw_key, c.name),)
        if c.type is ColumnType.DATETIME:
            lineage[date_column(c.name)] = lineage[precision_column(c.name)] = lineage[c.name]
    for name in (FLAGS, FLAG_DETAILS, DUPLICATES_COLLAPSED):
        lineage[name] = everything
    lineage.update({name: (ColumnRef(raw_key, name),) for name in PROVENANCE_NAMES})
    lineage.update({c.name: (ColumnRef(raw_key, c.name),) for c in PARTITION})
    lineage[CURATED_RUN_ID] = ()
    return DatasetOutput(
        zone=Zone.CURATED,
        name=contract.name,
        title=contract.title,
        family=contract.family,
        description=f"{contract.title} ({contract.domain}), conformed to its contract: "
        f"{contract.description} Natural key {', '.join(contract.natural_key)}; rows breaking a "
        "quarantining rule are in quarantine/ with their reasons.",
        columns=(*_typed(contract), *_FLAGGING, *PROVENANCE, _CURATED_RUN, *PARTITION),
        checks=tuple(
            OutputCheck(r.name, f"[{r.effect.value}] {r.description}", r.blocking)
            for r in contract.rules
        ),
        inputs=inputs,
        column_lineage=lineage,
    )


def quarantine_output(contract: DatasetContract) -> DatasetOutput:
    """Rows set aside by curation: raw values kept as delivered, with every reason."""
    return DatasetOutput(
        zone=Zone.QUARANTINE,
        name=contract.name,
        title=f"{contract.title}, quarantined rows",
        family=contract.family,
        description=f"Rows of {contract.title} that broke a quarantining rule, with raw values.",
        columns=(
            *_delivered(contract),
            OutputColumn(NATURAL_KEY, "string", "Natural key as text, for finding the row"),
            *PROVENANCE,
            OutputColumn(REJECT_REASONS, "array<string>", "Quarantining rules the row breaks"),
            OutputColumn(REJECT_DETAILS, "array<string>", "One line per problem, rule first"),
            *_FLAGGING,
            _CURATED_RUN,
            *PARTITION,
        ),
        inputs=(asset_key(Zone.RAW, contract.name),)
        + ((asset_key(Zone.RAW, "dm"),) if contract.references_dm else ()),
    )


def current_output(contract: DatasetContract) -> DatasetOutput:
    """A study's current data of a dataset: the curated rows of the latest delivery that
    carried it, one table per dataset (`curated.<family>_<dataset>_current`).

    Not an asset: the curated job replaces a study's rows here in the same run that commits
    the delivery which became the study's latest for the dataset. Its `delivery` column says
    which delivery the rows came from.
    """
    curated = curated_output(contract)
    return DatasetOutput(
        zone=Zone.CURATED,
        name=f"{contract.name}{CURRENT_SUFFIX}",
        title=f"{contract.title}, current",
        description=f"{contract.title} as it stands after the study's latest delivery that "
        "carried it: the curated rows of that delivery, never two deliveries of one study.",
        columns=curated.columns,
        inputs=(curated.asset_key,),
        column_lineage={c.name: (ColumnRef(curated.asset_key, c.name),) for c in curated.columns},
    )


# ---- the sensor family's curated minutes -----------------------------------------------

SOURCE_ROW_LAST = "_source_row_last"
SOURCE_ROWS = "_source_rows"
# (name, type, description, raw columns it is computed from) of each minute column.
_MINUTE_COLUMNS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("STUDYID", "string", "Study Identifier", ("STUDYID",)),
    ("USUBJID", "string", "Unique Subject Identifier", ("USUBJID",)),
    (
        "MINUTE",
        "timestamp",
        "Minute of true time (TIMESTAMP - CLOCK_OFFSET_S), UTC",
        ("TIMESTAMP", "CLOCK_OFFSET_S"),
    ),
    ("DEVICE_ID", "string", "Device(s) of the minute, comma-separated", ("DEVICE_ID",)),
    ("SECONDS_WORN", "int", "Seconds of the minute with a kept reading", ("TIMESTAMP",)),
    ("STEPS", "bigint", "Steps in the minute", ("STEPS",)),
    ("HR_READINGS", "int", "Seconds with a heart-rate reading", ("HEART_RATE",)),
    ("HR_MIN", "double", "Lowest heart rate (beats/min)", ("HEART_RATE",)),
    ("HR_MAX", "double", "Highest heart rate (beats/min)", ("HEART_RATE",)),
    ("HR_SUM", "double", "Sum of the heart-rate readings, for exact daily means", ("HEART_RATE",)),
    ("HR_MEAN", "double", "Mean heart rate (beats/min)", ("HEART_RATE",)),
    ("ACCEL_MEAN", "double", "Mean acceleration magnitude (g)", ("ACCEL_MAG",)),
    (
        "CLOCK_CORRECTION_S",
        "int",
        "Largest clock offset taken off a reading of the minute (s)",
        ("CLOCK_OFFSET_S",),
    ),
)


def sensor_minutes_output(contract: DatasetContract) -> DatasetOutput:
    """Curated sensor data: the contract's rules applied to every second, then one row per
    subject, true minute and source file, with the minute's parts, flags and source rows."""
    raw_key = asset_key(Zone.RAW, contract.name)
    everything = tuple(ColumnRef(raw_key, c) for c in contract.column_names)
    lineage: dict[str, tuple[ColumnRef, ...]] = {
        name: tuple(ColumnRef(raw_key, c) for c in sources)
        for name, _, _, sources in _MINUTE_COLUMNS
    }
    for name in (FLAGS, FLAG_DETAILS, DUPLICATES_COLLAPSED, SOURCE_ROWS):
        lineage[name] = everything
    lineage.update({name: (ColumnRef(raw_key, name),) for name in PROVENANCE_NAMES})
    lineage[SOURCE_ROW_LAST] = (ColumnRef(raw_key, SOURCE_ROW),)
    lineage.update({c.name: (ColumnRef(raw_key, c.name),) for c in PARTITION})
    lineage[CURATED_RUN_ID] = ()
    provenance = (
        PROVENANCE[0],
        OutputColumn(SOURCE_ROW, "bigint", "First row of that file in the minute (1-based)"),
        OutputColumn(SOURCE_ROW_LAST, "bigint", "Last row of that file in the minute"),
        OutputColumn(SOURCE_ROWS, "bigint", "Rows of that file in the minute, duplicates too"),
        *PROVENANCE[2:],
    )
    return DatasetOutput(
        zone=Zone.CURATED,
        name=contract.name,
        title=f"{contract.title} per minute",
        family=contract.family,
        description=f"{contract.title}, conformed to its contract and resampled to one row per "
        "subject and minute of true time (the device's clock corrected by its offset): "
        "duplicated seconds collapsed, minutes with a gap, a corrected clock or two devices "
        "flagged; impossible readings are in quarantine/ with their reasons.",
        columns=(
            *[OutputColumn(n, t, d) for n, t, d, _ in _MINUTE_COLUMNS],
            *_FLAGGING,
            *provenance,
            _CURATED_RUN,
            *PARTITION,
        ),
        checks=tuple(
            OutputCheck(r.name, f"[{r.effect.value}] {r.description}", r.blocking)
            for r in contract.rules
        ),
        inputs=(raw_key,),
        column_lineage=lineage,
    )


# ---- outputs of a feature table -----------------------------------------------------------


def feature_output(contract: FeatureContract) -> DatasetOutput:
    lineage = {
        name: tuple(ColumnRef(asset_key(Zone.CURATED, d), column) for d, column in sources)
        for name, sources in contract.lineage.items()
    }
    lineage[FEATURIZED_RUN_ID] = ()
    first = asset_key(Zone.CURATED, contract.upstream[0])
    lineage.update({c.name: (ColumnRef(first, c.name),) for c in PARTITION})
    return DatasetOutput(
        zone=Zone.FEATURES,
        name=contract.name,
        title=contract.title,
        family=contract.family,
        description=contract.description,
        columns=(
            *[OutputColumn(c.name, c.type.spark_sql, c.label) for c in contract.columns],
            OutputColumn(FEATURIZED_RUN_ID, "string", "Dagster run that built the row"),
            *PARTITION,
        ),
        checks=tuple(OutputCheck(r.name, r.description, r.blocking) for r in contract.rules),
        inputs=tuple(asset_key(Zone.CURATED, d) for d in contract.upstream),
        column_lineage=lineage,
    )


# ---- files that could not be ingested -----------------------------------------------------


def rejected_files_output(family: str) -> DatasetOutput:
    """The family's landing files that could not be read at all (`quarantine.<family>_...`)."""
    return DatasetOutput(
        zone=Zone.QUARANTINE,
        name=REJECTED_FILES_DATASET,
        title="Rejected landing files",
        description="Landing files that could not be read at all, one row each, with the "
        "reason; the files themselves stay in landing.",
        columns=_REJECTED_FILE_COLUMNS,
        family=family,
    )


_REJECTED_FILE_COLUMNS = (
    OutputColumn("file", "string", "File name in the delivery"),
    OutputColumn("uri", "string", "Where the file lies in landing"),
    OutputColumn("size", "bigint", "Bytes"),
    OutputColumn("sha256", "string", "sha256 of the file, when it could be read"),
    OutputColumn("dataset", "string", "Dataset the file belongs to, if known"),
    OutputColumn("reason", "string", "Why it was rejected, one line"),
    OutputColumn("partition", "string", "Partition key STUDY/DELIVERY"),
    OutputColumn("run_id", "string", "Dagster run that found it"),
    OutputColumn("detected_at", "string", "UTC time it was found"),
    *PARTITION,
)
REJECTED_FILES = rejected_files_output(CLINICAL_FAMILY)


# ---- the clinical family ------------------------------------------------------------------

RAW_OUTPUTS = tuple(raw_output(c) for c in SDTM_CONTRACTS)
CURATED_OUTPUTS = tuple(curated_output(c) for c in SDTM_CONTRACTS)
QUARANTINE_OUTPUTS = tuple(quarantine_output(c) for c in SDTM_CONTRACTS)
CURRENT_OUTPUTS = tuple(current_output(c) for c in SDTM_CONTRACTS)
FEATURE_OUTPUTS = tuple(feature_output(c) for c in FEATURE_CONTRACTS)
CLINICAL_OUTPUTS: tuple[DatasetOutput, ...] = (
    *RAW_OUTPUTS,
    *CURATED_OUTPUTS,
    *QUARANTINE_OUTPUTS,
    *FEATURE_OUTPUTS,
)

# ---- the sensor family --------------------------------------------------------------------

SENSOR_OUTPUTS: tuple[DatasetOutput, ...] = (
    raw_output(SENSOR),
    sensor_minutes_output(SENSOR),
    quarantine_output(SENSOR),
    feature_output(SENSOR_DAILY),
)

# ---- the omics family ---------------------------------------------------------------------

# Columns curation adds to every count: what the count means for its sample.
_SAMPLE_QC_COLUMNS = (
    OutputColumn("LIBRARY_SIZE", "bigint", "Reads of the sample over every gene kept"),
    OutputColumn("DETECTED_GENES", "bigint", "Genes of the sample with at least one read"),
    OutputColumn("GENES_MEASURED", "bigint", "Genes the batch measured (any sample)"),
    OutputColumn(
        "PASSES_QC",
        "boolean",
        "Library size and detected share at or above the QC limits (failing rows are flagged "
        "sample_qc, not dropped)",
    ),
    OutputColumn("LOG_CPM", "double", "log2((COUNT + 0.5) / (LIBRARY_SIZE + 1) * 1e6)"),
)


def omics_counts_output(contract: DatasetContract) -> DatasetOutput:
    """Curated counts: conformed like any dataset, then each count with its sample's QC and its
    log-CPM (`spark_jobs.families.omics`)."""
    base = curated_output(contract)
    typed = len(_typed(contract))
    raw_key = asset_key(Zone.RAW, contract.name)
    counts = tuple(ColumnRef(raw_key, c) for c in ("SAMPLE_ID", "GENE_ID", "COUNT"))
    lineage = {
        **base.column_lineage,
        **{c.name: counts for c in _SAMPLE_QC_COLUMNS},
        "GENES_MEASURED": (ColumnRef(raw_key, "GENE_ID"),),
    }
    return replace(
        base,
        description=f"{base.description} Each count carries its sample's library size, "
        "detected genes and QC result, and its log-CPM.",
        columns=(*base.columns[:typed], *_SAMPLE_QC_COLUMNS, *base.columns[typed:]),
        column_lineage=lineage,
    )


OMICS_OUTPUTS: tuple[DatasetOutput, ...] = (
    raw_output(SAMPLES),
    raw_output(COUNTS),
    curated_output(SAMPLES),
    omics_counts_output(COUNTS),
    quarantine_output(SAMPLES),
    quarantine_output(COUNTS),
    feature_output(OMICS_TOP_GENES),
)
FAMILY_OUTPUTS = {
    CLINICAL_FAMILY: CLINICAL_OUTPUTS,
    SENSOR_FAMILY: SENSOR_OUTPUTS,
    OMICS_FAMILY: OMICS_OUTPUTS,
}
_BY_KEY = {
    o.asset_key: o
    for o in (
        *CLINICAL_OUTPUTS,
        *CURRENT_OUTPUTS,
        REJECTED_FILES,
        *SENSOR_OUTPUTS,
        *OMICS_OUTPUTS,
    )
}


def output(zone: Zone, dataset: str) -> DatasetOutput:
    """The declared output of a dataset in a zone; a clear error for an unknown one."""
    try:
        return _BY_KEY[asset_key(zone, dataset)]
    except KeyError:
        known = sorted(o.name for o in _BY_KEY.values() if o.zone is zone)
        raise KeyError(f"no {zone.value} output {dataset!r}; known: {known}") from None


def blocks_downstream(asset_key: str, check_name: str) -> bool:
    """Whether Dagster declares the check blocking: when it fails, nothing downstream runs."""
    found = _BY_KEY.get(asset_key)
    return found is not None and any(c.name == check_name and c.blocking for c in found.checks)


def asset_outputs(family: str = CLINICAL_FAMILY) -> tuple[DatasetOutput, ...]:
    """Outputs Dagster shows as assets of a family, in zone order (quarantine is part of
    curated)."""
    return tuple(o for o in FAMILY_OUTPUTS[family] if o.is_asset)


def every_asset_output() -> tuple[DatasetOutput, ...]:
    """The assets of every family (asset keys are unique across families)."""
    return tuple(o for outputs in FAMILY_OUTPUTS.values() for o in outputs if o.is_asset)


def family_outputs(family: str, zone: Zone) -> tuple[DatasetOutput, ...]:
    """A family's declared outputs of one zone, in contract order."""
    return tuple(o for o in FAMILY_OUTPUTS[family] if o.zone is zone)


# ---- declared versus written --------------------------------------------------------------


def schema_differences(
    declared: DatasetOutput, written: Iterable[tuple[str, str]], *, exact: bool = False
) -> list[str]:
    """Every way a written schema ((name, type) pairs in order) departs from the declared one.

    Delivered columns may be absent, typed as the files typed them, and joined by columns
    outside the contract (schema drift, reported by its own check), unless `exact` asks for a
    delivery shaped exactly like the declaration (a SAS XPORT delivery of every column).
    """
    written = list(written)
    names = [name for name, _ in written]
    types = dict(written)
    problems: list[str] = []
    for column in declared.columns:
        optional = column.delivered and not exact
        if column.name not in types:
            if not optional:
                problems.append(f"column {column.name} is declared but not written")
        elif types[column.name] != column.type and not optional:
            problems.append(
                f"column {column.name} is written as {types[column.name]}, "
                f"declared as {column.type}"
            )
    open_schema = any(c.delivered for c in declared.columns) and not exact
    for name in names:
        if name not in declared.column_names and not open_schema:
            problems.append(f"column {name} is written but not declared")
    return problems + _order_problems(declared, names)


def _order_problems(declared: DatasetOutput, names: Sequence[str]) -> list[str]:
    """Declared columns must be written in declared order (drift columns may sit between)."""
    position = {name: i for i, name in enumerate(declared.column_names)}
    known = [n for n in names if n in position]
    if known == sorted(known, key=position.__getitem__):
        return []
    return [f"columns are written in the order {', '.join(known)}, not as declared"]
