"""The omics source family: landing, raw counts and sample sheets, curated, top genes."""
