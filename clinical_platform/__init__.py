"""Clinical data platform: SDTM, sensor and omics deliveries to curated and feature datasets."""
