"""Tests for the omics generator: determinism, the faults it says it injected, and a truth
(library sizes, QC, log-CPM variances) that an independent reading of its files reproduces."""

from __future__ import annotations

import hashlib
import json
import math
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clinical_platform.cli import main as cli_main
from clinical_platform.generators.omics import (
    MIN_LIBRARY_SIZE,
    OmicsDelivery,
    generate_omics,
    log_cpm,
)

SAMPLES, GENES, BATCHES = 12, 400, 2
# pandas frames are typed Any here: pandas' stubs make every column access a union.
Frame = Any


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> OmicsDelivery:
    return generate_omics(tmp_path_factory.mktemp("omics"), SAMPLES, GENES, batches=BATCHES)


def counts_of(delivery: OmicsDelivery, batch: int) -> Frame:
    (path,) = [p for p in delivery.files if p.name.startswith(f"counts_batch{batch}.")]
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def sheet_of(delivery: OmicsDelivery, batch: int) -> Frame:
    (path,) = [p for p in delivery.files if p.name == f"samples_batch{batch}.csv"]
    return pd.read_csv(path)


def test_same_arguments_give_the_same_bytes(delivery: OmicsDelivery, tmp_path: Path) -> None:
    again = generate_omics(tmp_path / "again", SAMPLES, GENES, batches=BATCHES)
    other = generate_omics(tmp_path / "other", SAMPLES, GENES, batches=BATCHES, seed=5)

    def digests(found: OmicsDelivery) -> list[str]:
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in found.files]

    assert digests(again) == digests(delivery) != digests(other)
    assert [p.name for p in delivery.files] == [
        "counts_batch1.parquet",
        "samples_batch1.csv",
        "counts_batch2.parquet",
        "samples_batch2.csv",
    ]


def test_every_injected_fault_is_in_the_files(delivery: OmicsDelivery) -> None:
    first, second = counts_of(delivery, 1), counts_of(delivery, 2)
    assert delivery.rows == len(first) + len(second)
    # Batch 1: samples 1-6, the sixth sent twice with other counts.
    copies = first.groupby(["SAMPLE_ID", "GENE_ID"]).size()
    assert sorted(copies[copies == 2].index.get_level_values(0).unique()) == ["S000006"]
    assert len(copies) == 6 * GENES and len(first) == 7 * GENES
    twice = first[first["SAMPLE_ID"] == "S000006"]
    assert not (
        twice.iloc[:GENES]["COUNT"].to_numpy() == twice.iloc[GENES:]["COUNT"].to_numpy()
    ).all()
    assert sheet_of(delivery, 1)["SAMPLE_ID"].tolist().count("S000006") == 2
    # Batch 2 lacks 1% of the genes; its first sample has 1% of a library.
    missing = sorted(set(first["GENE_ID"]) - set(second["GENE_ID"]))
    assert missing == delivery.missing_genes[2] and len(missing) == 4
    libraries = second.groupby("SAMPLE_ID")["COUNT"].sum()
    assert libraries["S000007"] < MIN_LIBRARY_SIZE < libraries.drop("S000007").min()
    assert delivery.faults == {
        "low_library_samples": 1,
        "duplicated_sample_ids": 1,
        "missing_genes": 4,
    }
    assert sheet_of(delivery, 2)["SAMPLE_ID"].tolist() == sorted(second["SAMPLE_ID"].unique())


def test_the_truth_is_what_the_files_hold(delivery: OmicsDelivery) -> None:
    for batch in (1, 2):
        counts = counts_of(delivery, batch)
        truths = [t for t in delivery.samples if t.batch == batch]
        per_sample = [
            counts.iloc[i * GENES_IN[batch] : (i + 1) * GENES_IN[batch]] for i in range(len(truths))
        ]
        assert [t.library_size for t in truths] == [int(s["COUNT"].sum()) for s in per_sample]
        assert [t.detected_genes for t in truths] == [
            int((s["COUNT"] > 0).sum()) for s in per_sample
        ]
        used = [
            s for s, t in zip(per_sample, truths, strict=True) if t.passes_qc and not t.duplicated
        ]
        values = pd.DataFrame(
            {
                str(s["SAMPLE_ID"].iloc[0]): [voom(c, s["COUNT"].sum()) for c in s["COUNT"]]
                for s in used
            },
            index=used[0]["GENE_ID"].to_numpy(),
        )
        variance = values.var(axis=1, ddof=1)
        truth = delivery.gene_variance[batch]
        assert sorted(truth) == sorted(variance.index)
        for gene, expected in variance.items():
            assert truth[str(gene)] == pytest.approx(expected, rel=1e-9, abs=1e-12)
        top = variance.sort_values(ascending=False).index[:10].tolist()
        assert delivery.top_variance_genes(batch, 10) == top
    assert [t.passes_qc for t in delivery.samples].count(False) == 1


GENES_IN = {1: GENES, 2: GENES - 4}


def voom(count: float, library_size: float) -> float:
    """limma/voom's log-CPM, written out here so the test does not reuse the generator's."""
    return math.log2((count + 0.5) / (library_size + 1.0) * 1e6)


def test_log_cpm_is_limma_voom() -> None:
    found = log_cpm(np.array([0, 99]), 999_999)
    assert found.tolist() == pytest.approx([math.log2(0.5), math.log2(99.5)])
    assert log_cpm(np.array([99]), 1_999_999)[0] == pytest.approx(math.log2(49.75))


def test_csv_holds_the_same_counts_as_parquet(tmp_path: Path) -> None:
    parquet = generate_omics(tmp_path / "p", 4, 100)
    text = generate_omics(tmp_path / "c", 4, 100, file_format="csv")
    assert text.samples == parquet.samples and text.gene_variance == parquet.gene_variance
    for batch in (1, 2):
        assert counts_of(text, batch).equals(counts_of(parquet, batch))


def test_bad_arguments_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="genes must be an integer >= 100, got 10"):
        generate_omics(tmp_path, 4, 10)
    with pytest.raises(ValueError, match="batches must be an integer from 1 to the samples"):
        generate_omics(tmp_path, 4, 100, batches=5)


def test_the_command_writes_files_and_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, truth = tmp_path / "out", tmp_path / "truth.json"
    argv = ["generate", "omics", "--samples", "4", "--genes", "200", "--out", str(out)]
    with pytest.raises(SystemExit) as exited:
        cli_main([*argv, "--truth", str(truth)])
    assert exited.value.code == 0
    written = json.loads(truth.read_text())
    assert len(written["samples"]) == 5  # one sample sent twice
    assert written["faults"]["missing_genes"] == 2
    assert "omics files, " in capsys.readouterr().out


def peak_bytes(out: Path, samples: int) -> int:
    tracemalloc.start()
    try:
        generate_omics(out, samples, 5_000, batches=1)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_one_sample_whatever_the_samples(tmp_path: Path) -> None:
    """Eight times the samples (holding them would need eight times the memory) fit in about
    the memory of a few: each sample is written and released before the next is drawn."""
    few, many = peak_bytes(tmp_path / "few", 4), peak_bytes(tmp_path / "many", 32)
    assert many < 1.5 * few


def test_one_batch_has_every_gene_and_still_the_other_faults(tmp_path: Path) -> None:
    alone = generate_omics(tmp_path, 4, 100, batches=1)
    assert alone.faults == {
        "low_library_samples": 1,
        "duplicated_sample_ids": 1,
        "missing_genes": 0,
    }
    assert counts_of(alone, 1)["GENE_ID"].nunique() == 100
    assert [t.sample_id for t in alone.samples].count("S000004") == 2
