"""Clinical data platform: SDTM, sensor and omics deliveries to curated and feature datasets."""

import warnings

# Two Dagster features are used knowingly (per-delivery check results; the landing zone as an
# observable source): their beta/preview notices would open every command's output.
warnings.filterwarnings("ignore", message=r"Specifying a partitions_def on an AssetCheckSpec")
warnings.filterwarnings("ignore", message=r"Function `observable_source_asset` is currently")
