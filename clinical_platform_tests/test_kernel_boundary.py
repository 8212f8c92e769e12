"""The kernel is the only place that spells asset keys, check names, system columns and lake paths.

Walks the product source (ast) and fails on a string literal that names one of them, or on an
f-string that builds an asset key or a partition path by hand. Docstrings may describe them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from clinical_platform_tests.conftest import PROJECT_ROOT
from spark_jobs.contracts import RuleKind
from spark_jobs.contracts.features import FeatureCheck
from spark_jobs.contracts.layout import MANIFEST_NAME, REJECTED_FILES_DATASET, Zone
from spark_jobs.contracts.outputs import (
    CLINICAL_OUTPUTS,
    CURATED_RUN_ID,
    DUPLICATES_COLLAPSED,
    FEATURIZED_RUN_ID,
    FLAG_DETAILS,
    FLAGS,
    NATURAL_KEY,
    PROVENANCE_NAMES,
    REJECT_DETAILS,
    REJECT_REASONS,
)

KERNEL = PROJECT_ROOT / "spark_jobs" / "contracts"
PRODUCT = (PROJECT_ROOT / "clinical_platform", PROJECT_ROOT / "spark_jobs")
NAMES = frozenset(
    {
        *(o.asset_key for o in CLINICAL_OUTPUTS),
        *(check for o in CLINICAL_OUTPUTS for check in o.check_names),
        *(kind.value for kind in RuleKind),
        *(check.value for check in FeatureCheck),
        *PROVENANCE_NAMES,
        CURATED_RUN_ID,
        FEATURIZED_RUN_ID,
        FLAGS,
        FLAG_DETAILS,
        DUPLICATES_COLLAPSED,
        NATURAL_KEY,
        REJECT_REASONS,
        REJECT_DETAILS,
        *(zone.value for zone in Zone),
        MANIFEST_NAME,
    }
)
PATH_PIECES = (
    "study=",
    "delivery=",
    "_system",
    "_staging",
    "_trash",
    MANIFEST_NAME,
    f"/{REJECTED_FILES_DATASET}",
)
KEY_PREFIXES = tuple(f"{zone.value}_" for zone in Zone)


def product_files() -> list[Path]:
    return sorted(
        path
        for root in PRODUCT
        for path in root.rglob("*.py")
        if KERNEL not in path.parents and "__pycache__" not in path.parts
    )


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def problems_in(source: str, where: str) -> Iterator[str]:
    tree = ast.parse(source)
    skipped = docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            yield from _hand_built(node, where)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in skipped:
                continue
            text = node.value
            if text in NAMES:
                yield f"{where}:{node.lineno}: {text!r} is spelled outside the kernel"
            elif any(piece in text for piece in PATH_PIECES):
                yield f"{where}:{node.lineno}: {text!r} spells a lake path outside the kernel"


def _hand_built(node: ast.JoinedStr, where: str) -> Iterator[str]:
    """An f-string that glues a zone prefix to a value builds an asset key by hand."""
    parts = node.values
    for part, following in zip(parts, [*parts[1:], None], strict=True):
        if not isinstance(part, ast.Constant) or not isinstance(part.value, str):
            continue
        if isinstance(following, ast.FormattedValue) and part.value.endswith(KEY_PREFIXES):
            yield f"{where}:{node.lineno}: f-string builds an asset key from {part.value!r}"


def test_no_product_code_spells_what_the_kernel_owns() -> None:
    files = product_files()
    assert len(files) > 30
    found = [
        problem
        for path in files
        for problem in problems_in(path.read_text(), str(path.relative_to(PROJECT_ROOT)))
    ]
    assert found == []


def test_the_walk_finds_each_kind_of_violation() -> None:
    """The test above can fail: each kind of hand-spelled name is caught here."""
    source = '''
"""A docstring may say raw_dm and study=<S>."""
key = "curated_vs"
check = "reconciliation"
column = "_source_uri"
path = f"{root}/study={study}/delivery={delivery}"
asset = f"raw_{name}"
record = f"{folder}/_delivery.json"
fine = f"{name} raw rows"
'''
    found = list(problems_in(source, "probe.py"))
    assert sorted({line.split(": ", 1)[0] for line in found}) == [
        "probe.py:3",
        "probe.py:4",
        "probe.py:5",
        "probe.py:6",
        "probe.py:7",
        "probe.py:8",
    ]


def test_every_spark_job_function_reads_as_one_step() -> None:
    """Jobs are named steps a test can call on a few rows: no function reaches 60 lines."""
    lengths = {}
    for path in (PROJECT_ROOT / "spark_jobs").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                end = node.end_lineno or node.lineno
                lengths[f"{path.relative_to(PROJECT_ROOT)}:{node.name}"] = end - node.lineno + 1
    longest = max(lengths, key=lengths.__getitem__)
    assert len(lengths) > 150
    assert lengths[longest] < 60, longest
