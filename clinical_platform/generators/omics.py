"""Deterministic synthetic omics delivery: RNA-seq style counts in long format (sample x gene)
with sample metadata, the faults real batches carry, and the truth a pipeline must reach.

Each sample's counts are drawn from their own random stream (`SeedSequence([seed, 2, sample,
copy])`, copy 1 only for a sample sent twice; the plan's stream is `[seed, 1]`)
and written as one Parquet row group (or CSV chunk), so memory is one sample's genes plus
per-gene running sums, whatever the number of samples.

Files, one pair per batch (the delivery key names the upload batch):
- `counts_batch<k>.parquet|csv`: SAMPLE_ID, GENE_ID, COUNT (integer reads);
- `samples_batch<k>.csv`: STUDYID, USUBJID, SAMPLE_ID, BATCH, TISSUE, VISIT, COLLECTION_DATE.

The signal: each gene has a mean expression (log-normal across genes), each sample a library
size (log-normal around 20 million reads); counts are negative binomial around their product.

Faults, each counted in `OmicsDelivery.faults`:
- a sample with a low library size: the first sample of the last batch has 1% of its reads;
- a duplicated sample id: the last sample of batch 1 is sent twice in that batch, under the
  same SAMPLE_ID and with other counts (both copies are wrong to use: which one is right?);
- genes missing from one batch: the last batch has no rows for 1% of the genes (with two
  batches or more: alone, a batch's genes are all there are).

The truth: every sample's library size and detected genes, which samples pass QC, and, per
batch, the variance of each gene's log-CPM over its QC-passing samples that are not
duplicated, the basis of the features' top variance genes. log-CPM follows limma/voom:
log2((count + 0.5) / (library size + 1) * 1e6).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from clinical_platform.generators.streamed import (
    FileFormat,
    GeneratedDelivery,
    require_count,
    require_format,
    write_tables,
)

__all__ = [
    "MIN_DETECTED_SHARE",
    "MIN_LIBRARY_SIZE",
    "OmicsDelivery",
    "SampleTruth",
    "generate_omics",
    "log_cpm",
]

Progress = Callable[[int, int], None]  # (batches written, batches in all)

# Sample QC: a sample passes with at least this many reads, and reads on at least this share
# of the genes its batch measured.
MIN_LIBRARY_SIZE = 1_000_000
MIN_DETECTED_SHARE = 0.5
_DEPTH = 20_000_000
_DISPERSION = 0.2  # negative binomial: variance = mean + dispersion * mean^2
_LOW_LIBRARY_FRACTION = 0.01
_MISSING_GENE_SHARE = 0.01
_TISSUES = ("WHOLE BLOOD", "PBMC")
_VISITS = ("BASELINE", "WEEK 4", "WEEK 12")

COUNTS_SCHEMA = pa.schema(
    [("SAMPLE_ID", pa.string()), ("GENE_ID", pa.string()), ("COUNT", pa.int64())]
)
SAMPLE_COLUMNS = ("STUDYID", "USUBJID", "SAMPLE_ID", "BATCH", "TISSUE", "VISIT", "COLLECTION_DATE")


def log_cpm(counts: np.ndarray, library_size: float) -> np.ndarray:
    """limma/voom log-counts per million: finite for zero counts, comparable across depths."""
    return np.log2((counts + 0.5) / (library_size + 1.0) * 1e6)


@dataclass(frozen=True)
class SampleTruth:
    sample_id: str
    batch: int
    library_size: int
    detected_genes: int  # genes with a count above zero
    passes_qc: bool
    duplicated: bool  # this SAMPLE_ID was sent twice in its batch (both copies flagged)


@dataclass(frozen=True)
class OmicsDelivery(GeneratedDelivery):
    samples: list[SampleTruth] = field(default_factory=list)
    missing_genes: dict[int, list[str]] = field(default_factory=dict)  # batch -> gene ids
    gene_variance: dict[int, dict[str, float]] = field(default_factory=dict)  # per batch

    def top_variance_genes(self, batch: int, count: int) -> list[str]:
        """The `count` genes whose log-CPM varies most in a batch (ties by gene id)."""
        ranked = sorted(self.gene_variance[batch].items(), key=lambda item: (-item[1], item[0]))
        return [gene for gene, _ in ranked[:count]]


@dataclass
class _Plan:
    """What every sample shares: gene ids and means, and where the faults fall."""

    genes: np.ndarray  # object array of gene ids
    means: np.ndarray  # expected share of a library, per gene
    batches: list[list[int]]  # sample numbers per batch, in order
    missing: dict[int, np.ndarray]  # batch -> indexes of the genes it lacks
    low_library: int
    duplicate: int  # the sample of batch 1 sent twice


def generate_omics(
    out_dir: Path,
    samples: int,
    genes: int,
    *,
    batches: int = 2,
    study: str = "OMICS01",
    seed: int = 20240201,
    start: date = date(2024, 2, 1),
    file_format: FileFormat = "parquet",
    progress: Progress | None = None,
) -> OmicsDelivery:
    """Write each batch's counts and sample sheet into out_dir; return the truth.

    Raises ValueError for fewer than 2 samples or 100 genes, more batches than samples, or an
    unknown format.
    """
    _check(samples, genes, batches, file_format)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = _plan(seed, samples, genes, batches)
    variances: dict[int, dict[str, float]] = {}
    truths: list[SampleTruth] = []
    files: list[Path] = []
    rows = 0
    for batch, numbers in enumerate(plan.batches, start=1):
        sent = [*numbers, *([plan.duplicate] if batch == 1 else [])]
        draws = (
            (number, _sample_counts(seed, plan, number, int(position == len(numbers))))
            for position, number in enumerate(sent)
        )
        counts_path = out_dir / f"counts_batch{batch}.{file_format}"
        running = _Moments(genes)
        chunks = _observed(draws, plan, batch, running, truths)
        rows += write_tables(counts_path, COUNTS_SCHEMA, chunks, file_format)
        variances[batch] = running.variances(plan.genes)
        sheet = out_dir / f"samples_batch{batch}.csv"
        _write_sheet(sheet, study, batch, sent, start)
        files += [counts_path, sheet]
        if progress is not None:
            progress(batch, len(plan.batches))
    return OmicsDelivery(
        files=files,
        rows=rows,
        faults={
            "low_library_samples": 1,
            "duplicated_sample_ids": 1,
            "missing_genes": sum(len(m) for m in plan.missing.values()),
        },
        samples=truths,
        missing_genes={b: [str(plan.genes[i]) for i in m] for b, m in plan.missing.items()},
        gene_variance=variances,
    )


def _check(samples: int, genes: int, batches: int, file_format: str) -> None:
    require_count("samples", samples, 2)
    require_count("genes", genes, 100)
    if isinstance(batches, bool) or not isinstance(batches, int) or not 1 <= batches <= samples:
        raise ValueError(f"batches must be an integer from 1 to the samples, got {batches!r}")
    require_format(file_format)


def _plan(seed: int, samples: int, genes: int, batches: int) -> _Plan:
    rng = np.random.default_rng([seed, 1])
    weights = rng.lognormal(mean=0.0, sigma=2.0, size=genes)
    bounds = np.linspace(0, samples, batches + 1).round().astype(int)
    members = [list(range(bounds[b], bounds[b + 1])) for b in range(batches)]
    last = batches
    lacking = max(1, round(genes * _MISSING_GENE_SHARE))
    missing = (
        {last: np.sort(rng.choice(genes, size=lacking, replace=False))} if batches >= 2 else {}
    )
    return _Plan(
        genes=np.array([f"ENSG{index + 1:011d}" for index in range(genes)], dtype=object),
        means=weights / weights.sum(),
        batches=members,
        missing=missing,
        low_library=members[-1][0],
        duplicate=members[0][-1],
    )


def _sample_id(number: int) -> str:
    return f"S{number + 1:06d}"


def _sample_counts(seed: int, plan: _Plan, number: int, copy: int) -> np.ndarray:
    """One sample's counts over every gene (a sample sent twice draws again: other counts)."""
    rng = np.random.default_rng([seed, 2, number, copy])
    library = _DEPTH * rng.lognormal(mean=0.0, sigma=0.3)
    if number == plan.low_library:
        library *= _LOW_LIBRARY_FRACTION
    mean = plan.means * library
    shape = 1.0 / _DISPERSION
    return rng.poisson(rng.gamma(shape, mean / shape)).astype(np.int64)


class _Moments:
    """Per-gene sums of log-CPM and of its square over QC-passing samples (exact enough in
    float64 for variances of a few thousand samples)."""

    def __init__(self, genes: int) -> None:
        self.count = np.zeros(genes)
        self.total = np.zeros(genes)
        self.squares = np.zeros(genes)

    def add(self, present: np.ndarray, values: np.ndarray) -> None:
        self.count[present] += 1
        self.total[present] += values
        self.squares[present] += values * values

    def variances(self, genes: np.ndarray) -> dict[str, float]:
        """Sample variance (n - 1) of each gene seen in at least two passing samples."""
        found: dict[str, float] = {}
        for index in np.flatnonzero(self.count >= 2):
            n = self.count[index]
            mean = self.total[index] / n
            found[str(genes[index])] = float((self.squares[index] - n * mean * mean) / (n - 1))
        return found


def _observed(
    draws: Iterator[tuple[int, np.ndarray]],
    plan: _Plan,
    batch: int,
    running: _Moments,
    truths: list[SampleTruth],
) -> Iterator[pa.Table]:
    """Each sample's rows as sent (without the batch's missing genes), recording its truth."""
    present = np.ones(len(plan.genes), dtype=bool)
    present[plan.missing.get(batch, np.array([], dtype=int))] = False
    for number, counts in draws:
        kept = counts[present]
        library = int(kept.sum())
        detected = int((kept > 0).sum())
        passes = library >= MIN_LIBRARY_SIZE and detected >= MIN_DETECTED_SHARE * len(kept)
        duplicated = number == plan.duplicate
        truths.append(SampleTruth(_sample_id(number), batch, library, detected, passes, duplicated))
        if passes and not duplicated:
            running.add(present, log_cpm(kept, library))
        yield pa.table(
            [pa.array([_sample_id(number)] * len(kept)), pa.array(plan.genes[present]), kept],
            schema=COUNTS_SCHEMA,
        )


def _write_sheet(path: Path, study: str, batch: int, sent: list[int], start: date) -> None:
    """The batch's sample sheet: one row per sample sent, a twice-sent one twice."""
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", newline="", encoding="utf-8") as out:
            text = csv.writer(out, lineterminator="\n")
            text.writerow(SAMPLE_COLUMNS)
            for number in sent:
                subject, visit = divmod(number, len(_VISITS))
                collected = start + timedelta(days=7 * batch + visit)
                text.writerow(
                    (
                        study,
                        f"{study}-{1001 + subject}",
                        _sample_id(number),
                        batch,
                        _TISSUES[subject % len(_TISSUES)],
                        _VISITS[visit],
                        collected.isoformat(),
                    )
                )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
