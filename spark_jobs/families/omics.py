"""Omics counts: each count with its sample's QC and log-CPM, and the top-variance genes.

Curation (after the contract's rules, as for every dataset) adds per count its sample's library
size (reads over the genes kept), detected genes (genes with a read), the genes the batch
measured, whether the sample passes QC, and the count's log-CPM as limma/voom computes it:
log2((count + 0.5) / (library size + 1) * 1e6). A sample failing QC keeps its rows, flagged
`sample_qc` with the reason; the features leave it out.

Features, per batch (delivery): the genes whose log-CPM varies most over the samples that pass
QC (sample variance, ties by gene id), and every passing sample's log-CPM of those genes. Sums
go through decimals, so the same counts give the same bits (and ranks) in every run.

Pure DataFrame functions; no Spark session, no Dagster.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark_jobs.contracts.omics import MIN_DETECTED_SHARE, MIN_LIBRARY_SIZE
from spark_jobs.contracts.outputs import FLAG_DETAILS, FLAGS

SAMPLE_QC = "sample_qc"
# Log-CPM lies within +-100: 8 integer digits spare, and its square keeps 21 decimals.
_EXACT = "decimal(20,12)"


def with_sample_qc(kept: DataFrame) -> DataFrame:
    """Kept counts with their sample's library size, detected genes, QC result and log-CPM."""
    per_sample = kept.groupBy("SAMPLE_ID").agg(
        F.sum("COUNT").alias("LIBRARY_SIZE"),
        F.count(F.when(F.col("COUNT") > 0, True)).cast("bigint").alias("DETECTED_GENES"),
    )
    measured = kept.agg(F.countDistinct("GENE_ID").cast("bigint").alias("GENES_MEASURED"))
    library, detected = F.col("LIBRARY_SIZE"), F.col("DETECTED_GENES")
    genes = F.col("GENES_MEASURED")
    low_library = library < MIN_LIBRARY_SIZE
    few_genes = detected < F.lit(MIN_DETECTED_SHARE) * genes
    reasons = F.filter(
        F.array(
            F.when(
                low_library,
                F.format_string(
                    f"{SAMPLE_QC}: library size %d reads, below {MIN_LIBRARY_SIZE}", library
                ),
            ),
            F.when(
                few_genes,
                F.format_string(
                    # A literal percent sign is %% to Java's formatter.
                    f"{SAMPLE_QC}: %d of %d genes detected, below {MIN_DETECTED_SHARE * 100:.0f}%%",
                    detected,
                    genes,
                ),
            ),
        ),
        lambda value: value.isNotNull(),
    )
    joined = kept.join(F.broadcast(per_sample), "SAMPLE_ID").crossJoin(F.broadcast(measured))
    passes = ~low_library & ~few_genes
    return (
        joined.select(
            "*",
            passes.alias("PASSES_QC"),
            F.log2((F.col("COUNT") + 0.5) / (library + 1) * 1e6).alias("LOG_CPM"),
            F.when(passes, F.col(FLAGS))
            .otherwise(F.concat(F.col(FLAGS), F.array(F.lit(SAMPLE_QC))))
            .alias("__flags"),
            F.concat(F.col(FLAG_DETAILS), reasons).alias("__details"),
        )
        .drop(FLAGS, FLAG_DETAILS)
        .withColumnsRenamed({"__flags": FLAGS, "__details": FLAG_DETAILS})
    )


def gene_variances(counts: DataFrame) -> DataFrame:
    """Per gene, the sample variance of its log-CPM over the samples that pass QC (genes seen
    in at least two), from decimal sums: the same counts give the same bits in every run."""
    passing = counts.where("PASSES_QC")
    x = F.col("LOG_CPM").cast(_EXACT)
    sums = passing.groupBy("GENE_ID").agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(x).cast("double").alias("sx"),
        F.sum(x * x).cast("double").alias("sxx"),
    )
    n = F.col("n")
    variance = (F.col("sxx") - F.col("sx") * F.col("sx") / n) / (n - 1)
    return sums.where(n >= 2).select("GENE_ID", variance.alias("gene_variance"))


def top_genes(counts: DataFrame, top: int) -> DataFrame:
    """The `top` genes of highest variance (ties by gene id), with their rank."""
    ranked = Window.orderBy(F.desc("gene_variance"), "GENE_ID")
    return (
        gene_variances(counts)
        .withColumn("variance_rank", F.row_number().over(ranked).cast("bigint"))
        .where(F.col("variance_rank") <= top)
    )


def chosen_genes(counts: DataFrame, top: int) -> DataFrame:
    """`top_genes`, computed once: its few rows are brought to the driver and back, so that
    the features and their expected row count do not aggregate every count again each."""
    ranked = top_genes(counts, top)
    return counts.sparkSession.createDataFrame(ranked.collect(), ranked.schema)


def top_gene_features(
    counts: DataFrame, samples: DataFrame, pseudonym: Any, chosen: DataFrame
) -> DataFrame:
    """`features_omics_top_genes`: every passing sample's log-CPM of the batch's top genes
    (`chosen_genes`), with pseudonyms for the subject and the sample, its visit and tissue."""
    chosen = F.broadcast(chosen)
    sheet = samples.select("SAMPLE_ID", "STUDYID", "USUBJID", "VISIT", "TISSUE")
    rows = counts.where("PASSES_QC").join(chosen, "GENE_ID").join(sheet, "SAMPLE_ID", "left")
    return rows.select(
        pseudonym(F.col("STUDYID"), F.col("USUBJID")).alias("subject_pseudonym"),
        pseudonym(F.col("STUDYID"), F.col("SAMPLE_ID")).alias("sample_pseudonym"),
        F.col("VISIT").alias("visit"),
        F.col("TISSUE").alias("tissue"),
        F.col("GENE_ID").alias("gene_id"),
        "variance_rank",
        "gene_variance",
        F.col("LOG_CPM").alias("log_cpm"),
    )
