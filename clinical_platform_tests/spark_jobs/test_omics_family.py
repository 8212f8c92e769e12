"""Level 1: omics curation on a few rows: library size, detected genes, QC with its reasons,
log-CPM, and the variance ranking the features take the top genes from."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from pyspark.sql import SparkSession

from spark_jobs.contracts.outputs import FLAG_DETAILS, FLAGS
from spark_jobs.families.omics import top_genes, with_sample_qc


def counts(spark: SparkSession, rows: list[tuple[str, str, int]]):
    frame = spark.createDataFrame(rows, "SAMPLE_ID string, GENE_ID string, COUNT bigint")
    return frame.selectExpr("*", "array() AS _flags", "array() AS _flag_details")


def test_each_count_gets_its_samples_qc_and_log_cpm(spark: SparkSession) -> None:
    rows = [("A", f"G{g}", 300_000) for g in range(4)]  # 1.2M reads on 4 of 4 genes
    rows += [("B", "G0", 2_000_000), ("B", "G1", 0), ("B", "G2", 0), ("B", "G3", 0)]
    rows += [("C", "G0", 10), ("C", "G1", 0), ("C", "G2", 0), ("C", "G3", 0)]
    found = {(r.SAMPLE_ID, r.GENE_ID): r for r in with_sample_qc(counts(spark, rows)).collect()}
    a, b, c = found[("A", "G0")], found[("B", "G0")], found[("C", "G0")]
    assert (a.LIBRARY_SIZE, a.DETECTED_GENES, a.GENES_MEASURED, a.PASSES_QC) == (
        1_200_000,
        4,
        4,
        True,
    )
    assert pytest.approx(math.log2(300_000.5 / 1_200_001 * 1e6), rel=1e-15) == a.LOG_CPM
    assert a[FLAGS] == [] and a[FLAG_DETAILS] == []
    assert (b.PASSES_QC, b[FLAGS]) == (False, ["sample_qc"])
    assert b[FLAG_DETAILS] == ["sample_qc: 1 of 4 genes detected, below 50%"]
    assert c[FLAG_DETAILS] == [
        "sample_qc: library size 10 reads, below 1000000",
        "sample_qc: 1 of 4 genes detected, below 50%",
    ]
    assert pytest.approx(math.log2(0.5 / 11 * 1e6)) == found[("C", "G1")].LOG_CPM


def test_top_genes_rank_by_variance_over_passing_samples_ties_by_gene(
    spark: SparkSession,
) -> None:
    # Every sample has 1.2M reads: FLAT's log-CPM is the same in all, UP varies most, TIE1 and
    # TIE2 alike; REST takes the rest of each library.
    rows = []
    for sample, up, tie in (
        ("A", 10_000, 100_000),
        ("B", 100_000, 150_000),
        ("C", 400_000, 200_000),
    ):
        rest = 1_200_000 - 300_000 - up - 2 * tie
        rows += [(sample, "FLAT", 300_000), (sample, "UP", up), (sample, "REST", rest)]
        rows += [(sample, "TIE1", tie), (sample, "TIE2", tie)]
    rows += [("D", g, 5) for g in ("FLAT", "UP", "REST", "TIE1", "TIE2")]  # fails QC
    qc = with_sample_qc(counts(spark, rows))
    ranked = top_genes(qc, 4).orderBy("variance_rank").collect()
    assert [r.GENE_ID for r in ranked] == ["UP", "REST", "TIE1", "TIE2"]
    assert ranked[2].gene_variance == ranked[3].gene_variance
    assert [r.variance_rank for r in ranked] == [1, 2, 3, 4]
    flat = {r.GENE_ID: r.gene_variance for r in top_genes(qc, 5).collect()}["FLAT"]
    assert flat == 0.0  # decimal sums: equal values give exactly no variance


def test_a_sample_sent_twice_is_quarantined_whole_even_where_its_copies_agree(
    spark: SparkSession,
) -> None:
    from pyspark.sql import functions as F

    from spark_jobs.contracts.omics import COUNTS
    from spark_jobs.contracts.outputs import SOURCE_ROW, SOURCE_URI
    from spark_jobs.quality.evaluate import evaluate, rejected_condition
    from spark_jobs.quality.rule_sql import EvaluationContext

    rows = [("A", "G0", 7), ("A", "G1", 0), ("B", "G0", 5), ("B", "G1", 0)]
    rows += [("B", "G0", 9), ("B", "G1", 0)]  # B again: other count for G0, the same for G1
    raw = spark.createDataFrame(
        [(*r, "file:/counts.parquet", i + 1) for i, r in enumerate(rows)],
        f"SAMPLE_ID string, GENE_ID string, COUNT bigint, {SOURCE_URI} string, {SOURCE_ROW} bigint",
    )
    types = {"SAMPLE_ID": "string", "GENE_ID": "string", "COUNT": "bigint"}
    evaluated = evaluate(
        raw, COUNTS, types, EvaluationContext("OMICS01", dt.date(2030, 1, 1), None)
    )
    rejected = evaluated.filter(F.expr(rejected_condition(COUNTS)))
    assert sorted((r.SAMPLE_ID, r.GENE_ID) for r in rejected.collect()) == [
        ("B", "G0"),
        ("B", "G0"),
        ("B", "G1"),
        ("B", "G1"),
    ]
