"""Omics assets: landing_omics -> raw_counts, raw_samples -> curated_counts (sample QC and
log-CPM), curated_samples -> features_omics_top_genes, partitioned by study and sequencing
batch (`omics_deliveries`).

The same stages as the clinical family (`clinical.assets`), run by the same Spark jobs with
`--family omics`: the kernel's omics contracts say what they read and write.
"""

from clinical_platform.clinical.assets import FAMILY_STAGES, stage_asset
from clinical_platform.clinical.landing import landing_source
from spark_jobs.contracts.omics import OMICS_FAMILY

RAW_STAGE, CURATED_STAGE, FEATURES_STAGE = FAMILY_STAGES[OMICS_FAMILY]

landing_omics = landing_source(
    OMICS_FAMILY,
    "Count files and sample sheets as the sequencing lab sent them, one partition per batch",
)
omics_raw = stage_asset(RAW_STAGE, "landing -> raw: counts and sample sheets as delivered.")
omics_curated = stage_asset(
    CURATED_STAGE,
    "raw -> curated + quarantine: the contracts' rules, then each count with its sample's QC "
    "and its log-CPM.",
)
omics_features = stage_asset(
    FEATURES_STAGE,
    "curated -> features_omics_top_genes: per sample, the batch's most variable genes.",
)

OMICS_ASSETS = [landing_omics, omics_raw, omics_curated, omics_features]
