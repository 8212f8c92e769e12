"""The contracts are consistent with themselves and with the documented rule table."""

from __future__ import annotations

import re

import pytest

from clinical_platform_tests.conftest import PROJECT_ROOT
from spark_jobs.contracts import (
    FEATURE_CONTRACTS,
    SDTM_CONTRACTS,
    Effect,
    contract_for,
    domain_of_file,
    sdtm_contract,
)
from spark_jobs.contracts.features import IDENTIFYING_COLUMNS
from spark_jobs.contracts.rules import DEFAULT_RULES


@pytest.mark.parametrize("contract", SDTM_CONTRACTS, ids=lambda c: c.name)
def test_natural_key_columns_are_required_contract_columns(contract) -> None:
    assert set(contract.natural_key) <= set(contract.required_columns)
    assert {"STUDYID", "DOMAIN", "USUBJID"} <= set(contract.required_columns)
    assert len(contract.column_names) == len(set(contract.column_names))
    assert len({r.name for r in contract.rules}) == len(contract.rules)
    for start, end in contract.date_pairs:
        assert contract.column(start).is_datetime and contract.column(end).is_datetime


def test_documented_rule_table_matches_the_code() -> None:
    table = (PROJECT_ROOT / "docs" / "data_quality.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| \w+ \| (\w+) \|", table, flags=re.MULTILINE))
    assert rows == {kind.value: effect.value for kind, _, effect, _ in DEFAULT_RULES}


def test_split_lab_files_fold_into_lb_and_unknown_files_do_not() -> None:
    assert [domain_of_file(n) for n in ("lbch.xpt", "LBHE.csv", "lb.parquet", "ae.xpt")] == [
        "lb",
        "lb",
        "lb",
        "ae",
    ]
    assert [domain_of_file(n) for n in ("suppae.xpt", "define.xml", "qs.xpt")] == [None, None, None]


def test_study_overrides_change_row_rules_only() -> None:
    legacy = contract_for("ae", "LEGACY01")
    assert legacy.rule("terminology").effect is Effect.FLAG
    assert contract_for("ae", "CDISCPILOT01").rule("terminology").effect is Effect.WARN
    with pytest.raises(ValueError, match="blocking"):
        sdtm_contract("ae").with_effects({"reconciliation": Effect.WARN})
    with pytest.raises(KeyError, match="unknown rules"):
        sdtm_contract("ae").with_effects({"no_such_rule": Effect.OFF})


def test_feature_tables_declare_no_identifying_column() -> None:
    for contract in FEATURE_CONTRACTS:
        names = {c.name.upper() for c in contract.columns}
        assert not names & set(IDENTIFYING_COLUMNS)
        assert not [n for n in names if n.endswith(("DTC", "_DATE"))]
