"""Level 3: a generated omics batch landed and materialized through Dagster: raw counts and
sample sheet -> curated (sample QC, log-CPM) -> the top-variance genes per sample.

The generator knows the right answers: library sizes, detected genes and QC per sample, the
per-gene variance of log-CPM over the passing samples, and so the top genes. The sample sent
twice with other counts must be quarantined whole (which copy is right?), the low-library
sample kept but flagged and left out of the features.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from clinical_platform.generators.omics import OmicsDelivery, generate_omics, log_cpm
from clinical_platform.omics.assets import OMICS_ASSETS
from clinical_platform_tests.helpers import (
    assert_checks_alone_agree,
    checks,
    lake_catalog,
    land_and_materialize,
    materializations,
    read_table,
    run_family_checks,
)
from spark_jobs.contracts.layout import Delivery
from spark_jobs.contracts.omics import OMICS_FAMILY, TOP_GENES
from spark_jobs.contracts.outputs import FLAGS, OMICS_OUTPUTS, REJECT_REASONS, schema_differences

pytestmark = pytest.mark.slow

STUDY = "OMICS01"
DELIVERY = Delivery(STUDY, "2024-02-08")
SAMPLES, GENES = 12, 400


@pytest.fixture(scope="module")
def omics_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, OmicsDelivery, dg.ExecuteInProcessResult, str]:
    key = "omics-e2e-key-0123456789abcdef"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLINICAL_PSEUDONYM_KEY", key)
        root = tmp_path_factory.mktemp("omics_lake")
        # One batch holds both sample faults: the low library and the id sent twice.
        generated = generate_omics(root / "batch", SAMPLES, GENES, batches=1, study=STUDY)
        lake = root / "lake"
        result = land_and_materialize(root / "batch", DELIVERY, lake, OMICS_FAMILY, OMICS_ASSETS)
    return lake, generated, result, key


def table(spark: Any, lake: Path, zone: str, dataset: str) -> Any:
    return read_table(spark, lake, zone, dataset, DELIVERY, family=OMICS_FAMILY)


def test_every_stage_commits_with_the_declared_schemas(omics_run: Any, spark: Any) -> None:
    lake, _, result, _ = omics_run
    assert result.success
    assert sorted(materializations(result)) == sorted(
        o.asset_key for o in OMICS_OUTPUTS if o.is_asset
    )
    results = {k: c.passed for k, c in checks(result).items()}
    assert results[("curated_counts", "reconciliation")]
    assert not results[("curated_counts", "natural_key")]  # the sample sent twice
    assert results[("features_omics_top_genes", "no_identifiers")]
    assert results[("features_omics_top_genes", "one_row_per_sample_gene")]
    for out in OMICS_OUTPUTS:
        if not out.is_asset and not lake_catalog(lake).table_exists(out.table):
            continue  # a clean sheet sets nothing aside: no quarantine table is created
        written = [
            (f.name, f.dataType.simpleString())
            for f in table(spark, lake, out.zone, out.name).schema
        ]
        assert schema_differences(out, written) == [], out.asset_key


def test_the_sample_sent_twice_is_quarantined_whole(omics_run: Any, spark: Any) -> None:
    lake, generated, _, _ = omics_run
    duplicated = {t.sample_id for t in generated.samples if t.duplicated}
    rows = table(spark, lake, "quarantine", "counts").collect()
    assert {r.SAMPLE_ID for r in rows} == duplicated
    assert {tuple(r[REJECT_REASONS]) for r in rows} == {("natural_key",)}
    assert len(rows) == 2 * GENES


def test_sample_qc_and_log_cpm_are_the_truth(omics_run: Any, spark: Any) -> None:
    lake, generated, _, _ = omics_run
    curated = table(spark, lake, "curated", "counts")
    qc = {
        r.SAMPLE_ID: r
        for r in curated.select("SAMPLE_ID", "LIBRARY_SIZE", "DETECTED_GENES", "PASSES_QC", FLAGS)
        .distinct()
        .collect()
    }
    expected = {t.sample_id: t for t in generated.samples if not t.duplicated}
    assert sorted(qc) == sorted(expected)
    for sample, truth in expected.items():
        found = qc[sample]
        assert (
            truth.library_size,
            truth.detected_genes,
            truth.passes_qc,
        ) == (found.LIBRARY_SIZE, found.DETECTED_GENES, found.PASSES_QC), sample
        assert ("sample_qc" in found[FLAGS]) == (not truth.passes_qc)
    assert sum(not t.passes_qc for t in expected.values()) == 1  # the low-library sample
    counts = pd.read_parquet(generated.files[0])
    one = counts[next(iter(expected)) == counts.SAMPLE_ID]
    library = expected[str(one.SAMPLE_ID.iloc[0])].library_size
    values = {
        r.GENE_ID: r.LOG_CPM
        for r in curated.where(one.SAMPLE_ID.iloc[0] == curated.SAMPLE_ID).collect()
    }
    truth = dict(zip(one.GENE_ID, log_cpm(one.COUNT.to_numpy(), library), strict=True))
    assert values.keys() == truth.keys()
    assert np.allclose([values[g] for g in truth], list(truth.values()), rtol=1e-12)


def test_features_are_the_top_variance_genes_of_the_passing_samples(
    omics_run: Any, spark: Any
) -> None:
    lake, generated, _, key = omics_run
    rows = table(spark, lake, "features", "omics_top_genes").collect()
    top = generated.top_variance_genes(1, TOP_GENES)
    passing = [t.sample_id for t in generated.samples if t.passes_qc and not t.duplicated]

    def pseudonym(value: str) -> str:
        return hmac.new(key.encode(), f"{STUDY}/{value}".encode(), hashlib.sha256).hexdigest()

    assert {(r.sample_pseudonym, r.gene_id) for r in rows} == {
        (pseudonym(s), g) for s in passing for g in top
    }
    assert {r.gene_id: r.variance_rank for r in rows} == {g: i + 1 for i, g in enumerate(top)}
    variances = generated.gene_variance[1]
    for row in rows:
        assert row.gene_variance == pytest.approx(variances[row.gene_id], rel=1e-9)
    assert {r.subject_pseudonym for r in rows} <= {
        pseudonym(f"{STUDY}-{1001 + n}") for n in range(SAMPLES)
    }


def test_checks_run_alone_agree_with_the_materialization(omics_run: Any) -> None:
    """The `omics_checks` job re-evaluates the committed batch without writing: every check
    gives the verdict it gave when written, and the features their grain figures."""
    lake, _, result, _ = omics_run
    alone = run_family_checks(lake, DELIVERY, OMICS_FAMILY, OMICS_ASSETS)
    assert_checks_alone_agree(
        result,
        alone,
        ("features_omics_top_genes", "one_row_per_sample_gene"),
        ("rows", "expected_rows", "distinct_sample_genes"),
    )
