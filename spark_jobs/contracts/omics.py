"""The omics family's contracts: RNA-seq counts in long format and the batch's sample sheet.

A delivery is one sequencing batch: `counts_<batch>.parquet|csv` (SAMPLE_ID, GENE_ID, COUNT)
and `samples_<batch>.csv` (who, which visit, which tissue). The standard rules apply from the
same facts as SDTM: a SAMPLE_ID sent twice gives every gene two rows, so every row of that
sample is quarantined by `natural_key` (which copy would be right?), also where both copies
hold the same count (counts switch `exact_duplicates` off); a negative count is quarantined by
`plausible_range`.

Curation adds what a count means (`spark_jobs.families.omics`): each sample's library size and
detected genes, whether it passes QC (a failing sample's rows are flagged `sample_qc`, never
dropped), and log-CPM. Features are, per sample, the log-CPM of the batch's most variable genes.
"""

from __future__ import annotations

from spark_jobs.contracts.features import (
    NO_IDENTIFIERS_RULE,
    FeatureCheck,
    FeatureContract,
    grain_rule,
)
from spark_jobs.contracts.model import (
    Column,
    ColumnType,
    DatasetContract,
    Effect,
    PlausibleRange,
    RuleKind,
)
from spark_jobs.contracts.rules import with_standard_rules

OMICS_FAMILY = "omics"

S = ColumnType.STRING
D = ColumnType.DOUBLE
I = ColumnType.INTEGER  # noqa: E741 - the contract "integer" column type
DT = ColumnType.DATETIME

# Sample QC: at least this many reads, on at least this share of the genes the batch measured.
MIN_LIBRARY_SIZE = 1_000_000
MIN_DETECTED_SHARE = 0.5
# Features: the log-CPM of this many most variable genes of the batch, per sample.
TOP_GENES = 50

SAMPLES = with_standard_rules(
    DatasetContract(
        name="samples",
        domain="SAMPLES",
        title="Omics sample sheet",
        description="One row per sequenced sample: its subject, batch, tissue, visit and "
        "collection date.",
        columns=(
            Column("STUDYID", S, "Study Identifier", required=True, max_length=40),
            Column("USUBJID", S, "Unique Subject Identifier", required=True, max_length=40),
            Column("SAMPLE_ID", S, "Sample identifier of the sequencing lab", required=True),
            Column("BATCH", I, "Sequencing batch"),
            Column("TISSUE", S, "Tissue sequenced"),
            Column("VISIT", S, "Visit the sample was collected at"),
            Column("COLLECTION_DATE", DT, "Date of collection"),
        ),
        natural_key=("SAMPLE_ID",),
        file_stems=("samples",),
        references_dm=False,
        family=OMICS_FAMILY,
        cumulative=False,  # each batch's sheet lists that batch's samples
    )
)

# Counts are not collapsed when two rows of a sample and gene are alike: a sample sent twice
# has many genes with the same count in both copies (zeros above all), and collapsing those
# would keep them as if the sample had been sent once. Two rows of one key are a conflict.
COUNTS = with_standard_rules(
    DatasetContract(
        name="counts",
        domain="COUNTS",
        title="RNA-seq read counts",
        description="Reads per sample and gene, in long format.",
        columns=(
            Column("SAMPLE_ID", S, "Sample identifier of the sequencing lab", required=True),
            Column("GENE_ID", S, "Gene (Ensembl id)", required=True),
            Column("COUNT", I, "Reads mapped to the gene", required=True),
        ),
        natural_key=("SAMPLE_ID", "GENE_ID"),
        file_stems=("counts",),
        plausible_ranges=(PlausibleRange("COUNT", 0.0, 1e12, "reads", column="COUNT"),),
        references_dm=False,
        volume_change_limit=0.9,
        family=OMICS_FAMILY,
        cumulative=False,
    )
).with_effects({RuleKind.EXACT_DUPLICATES.value: Effect.OFF})

OMICS_CONTRACTS: tuple[DatasetContract, ...] = (SAMPLES, COUNTS)

_GENE = (("counts", "GENE_ID"),)
_VALUE = (("counts", "COUNT"), ("counts", "SAMPLE_ID"), ("counts", "GENE_ID"))
OMICS_TOP_GENES = FeatureContract(
    name="omics_top_genes",
    title="Top-variance genes per sample",
    description=f"For every sample of the batch that passed QC, the log-CPM of the batch's "
    f"{TOP_GENES} genes whose log-CPM varies most over those samples (one row per sample and "
    "gene). De-identified: keyed HMAC pseudonyms for the subject and the sample, no date.",
    grain="sample-gene",
    columns=(
        Column("subject_pseudonym", S, "HMAC-SHA256 of STUDYID/USUBJID under the study's key"),
        Column("sample_pseudonym", S, "HMAC-SHA256 of STUDYID/SAMPLE_ID under the study's key"),
        Column("visit", S, "Visit the sample was collected at"),
        Column("tissue", S, "Tissue sequenced"),
        Column("gene_id", S, "Gene (Ensembl id)"),
        Column("variance_rank", I, "1 = the gene whose log-CPM varies most in the batch"),
        Column("gene_variance", D, "Sample variance of the gene's log-CPM in the batch"),
        Column("log_cpm", D, "log2((count + 0.5) / (library size + 1) * 1e6)"),
    ),
    upstream=("counts", "samples"),
    rules=(
        NO_IDENTIFIERS_RULE,
        grain_rule(
            FeatureCheck.ONE_ROW_PER_SAMPLE_GENE,
            f"One row per count of a sample that passed QC on one of the {TOP_GENES} top genes, "
            "each (sample, gene) once, pseudonyms never missing.",
        ),
    ),
    lineage={
        "subject_pseudonym": (("samples", "STUDYID"), ("samples", "USUBJID")),
        "sample_pseudonym": (("samples", "STUDYID"), ("counts", "SAMPLE_ID")),
        "visit": (("samples", "VISIT"),),
        "tissue": (("samples", "TISSUE"),),
        "gene_id": _GENE,
        "variance_rank": _VALUE,
        "gene_variance": _VALUE,
        "log_cpm": _VALUE,
    },
    family=OMICS_FAMILY,
)
