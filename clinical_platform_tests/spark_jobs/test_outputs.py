"""Level 1: the kernel's output side, without Spark: schemas, keys, checks, lineage, paths."""

from __future__ import annotations

import pytest

from spark_jobs.contracts import SDTM_CONTRACTS, SUBJECT_PROFILE
from spark_jobs.contracts.layout import Delivery, LakeLayout, Zone
from spark_jobs.contracts.outputs import (
    CLINICAL_OUTPUTS,
    PROVENANCE_NAMES,
    asset_outputs,
    output,
    schema_differences,
)

DELIVERY = Delivery("S01", "2024-01-15")


def declared(zone: Zone, name: str) -> list[tuple[str, str]]:
    return [(c.name, c.type) for c in output(zone, name).columns]


def test_fifteen_assets_and_seven_quarantines() -> None:
    keys = [o.asset_key for o in asset_outputs()]
    assert len(keys) == len(set(keys)) == 15
    assert keys[:7] == [f"raw_{c.name}" for c in SDTM_CONTRACTS]
    assert keys[-1] == "features_subject_profile"
    quarantines = [o.asset_key for o in CLINICAL_OUTPUTS if not o.is_asset]
    assert quarantines == [f"quarantine_{c.name}" for c in SDTM_CONTRACTS]


def test_raw_is_typed_as_an_xport_delivery_with_provenance_last() -> None:
    """AESEQ is an integer in curated but a SAS number (double) as delivered."""
    columns = dict(declared(Zone.RAW, "ae"))
    assert columns["AESEQ"] == "double"
    assert columns["AESTDTC"] == "string"
    names = [name for name, _ in declared(Zone.RAW, "ae")]
    assert tuple(names[-7:]) == (*PROVENANCE_NAMES, "study", "delivery")
    assert all(c.delivered for c in output(Zone.RAW, "ae").columns[:-7])


def test_curated_declares_everything_the_job_writes() -> None:
    columns = declared(Zone.CURATED, "ae")
    names = [name for name, _ in columns]
    assert dict(columns)["AESEQ"] == "bigint"
    start = names.index("AESTDTC")
    assert columns[start : start + 3] == [
        ("AESTDTC", "string"),
        ("AESTDTC_DATE", "date"),
        ("AESTDTC_PRECISION", "string"),
    ]
    assert names[-11:] == [
        "_flags",
        "_flag_details",
        "_duplicates_collapsed",
        *PROVENANCE_NAMES,
        "_curated_run_id",
        "study",
        "delivery",
    ]
    assert dict(columns)["_duplicates_collapsed"] == "int"


def test_quarantine_keeps_raw_values_and_every_reason() -> None:
    names = [name for name, _ in declared(Zone.QUARANTINE, "vs")]
    assert dict(declared(Zone.QUARANTINE, "vs"))["VSSTRESN"] == "double"
    assert names[names.index("_natural_key") :] == [
        "_natural_key",
        *PROVENANCE_NAMES,
        "_reject_reasons",
        "_reject_details",
        "_flags",
        "_flag_details",
        "_duplicates_collapsed",
        "_curated_run_id",
        "study",
        "delivery",
    ]


def test_features_declare_the_run_column() -> None:
    names = [name for name, _ in declared(Zone.FEATURES, "subject_profile")]
    assert names == [*SUBJECT_PROFILE.column_names, "_featurized_run_id", "study", "delivery"]


def test_checks_and_inputs_follow_the_contracts() -> None:
    for contract in SDTM_CONTRACTS:
        raw = output(Zone.RAW, contract.name)
        assert [(c.name, c.blocking) for c in raw.checks] == [
            ("files_readable", False),
            ("contract_columns", False),
            ("direct_identifiers", False),
        ]
        curated = output(Zone.CURATED, contract.name)
        assert curated.check_names == tuple(r.name for r in contract.rules)
        expected = [f"raw_{contract.name}"] + (["raw_dm"] if contract.references_dm else [])
        assert list(curated.inputs) == expected
    features = output(Zone.FEATURES, "subject_profile")
    assert features.check_names == ("no_identifiers", "one_row_per_subject")
    assert features.inputs == tuple(f"curated_{d}" for d in SUBJECT_PROFILE.upstream)


def test_every_curated_and_feature_column_has_lineage_to_declared_columns() -> None:
    """Column lineage is data: every column listed, every source a declared column."""
    by_key = {o.asset_key: o for o in CLINICAL_OUTPUTS}
    for out in CLINICAL_OUTPUTS:
        if out.zone not in (Zone.CURATED, Zone.FEATURES):
            continue
        assert set(out.column_lineage) == set(out.column_names), out.asset_key
        for column, refs in out.column_lineage.items():
            for ref in refs:
                assert ref.asset_key in out.inputs, (out.asset_key, column, ref)
                assert ref.column in by_key[ref.asset_key].column_names, (column, ref)
    profile = output(Zone.FEATURES, "subject_profile").column_lineage
    assert {(r.asset_key, r.column) for r in profile["age"]} == {("curated_dm", "AGE")}
    assert ("curated_ex", "EXENDTC_DATE") in {
        (r.asset_key, r.column) for r in profile["last_dose_study_day"]
    }


def test_unknown_output_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="no curated output 'xx'"):
        output(Zone.CURATED, "xx")


# ---------------------------------------------------------------------------- differences


def test_the_declared_schema_has_no_differences() -> None:
    for out in CLINICAL_OUTPUTS:
        assert schema_differences(out, declared(out.zone, out.name), exact=True) == []


def test_a_column_added_by_a_job_but_not_declared_is_reported() -> None:
    written = [*declared(Zone.CURATED, "dm"), ("AGE_GROUP", "string")]
    assert schema_differences(output(Zone.CURATED, "dm"), written) == [
        "column AGE_GROUP is written but not declared"
    ]


def test_missing_retyped_and_reordered_columns_are_reported() -> None:
    curated = output(Zone.CURATED, "dm")
    columns = declared(Zone.CURATED, "dm")
    without = [c for c in columns if c[0] != "_flag_details"]
    assert schema_differences(curated, without) == [
        "column _flag_details is declared but not written"
    ]
    retyped = [(n, "int" if n == "AGE" else t) for n, t in columns]
    assert schema_differences(curated, retyped) == [
        "column AGE is written as int, declared as double"
    ]
    swapped = [columns[1], columns[0], *columns[2:]]
    problems = schema_differences(curated, swapped)
    assert len(problems) == 1 and problems[0].startswith("columns are written in the order")


def test_raw_tolerates_what_a_delivery_may_differ_in_unless_exact() -> None:
    """A CSV delivery types everything as text, may lack columns and may bring extra ones."""
    raw = output(Zone.RAW, "vs")
    csv_like = [(n, "string") for n, _ in declared(Zone.RAW, "vs")[:-7] if n != "EPOCH"] + [
        ("EXTRA", "string"),
        *declared(Zone.RAW, "vs")[-7:],
    ]
    assert schema_differences(raw, csv_like) == []
    exact = schema_differences(raw, csv_like, exact=True)
    assert "column EPOCH is declared but not written" in exact
    assert "column EXTRA is written but not declared" in exact
    assert "column VSSEQ is written as string, declared as double" in exact
    # Provenance is never optional.
    no_provenance = [c for c in csv_like if c[0] != "_source_row"]
    assert schema_differences(raw, no_provenance) == [
        "column _source_row is declared but not written"
    ]


# ---------------------------------------------------------------------------- paths


def test_every_lake_path_comes_from_the_layout() -> None:
    layout = LakeLayout("s3://lake/p")
    assert layout.manifest(DELIVERY) == "s3://lake/p/landing/clinical/S01/2024-01-15/_delivery.json"
    assert layout.dataset(Zone.CURATED, "dm") == "s3://lake/p/curated/clinical/dm"
    assert output(Zone.CURATED, "dm").table == "curated.clinical_dm"
    assert layout.catalog_db == "s3://lake/p/_system/catalog.sqlite"
    assert layout.dossier(DELIVERY) == "s3://lake/p/_system/dossiers/S01_2024-01-15.md"
    assert layout.landing_staging(DELIVERY, "42") == (
        "s3://lake/p/landing/clinical/S01/.2024-01-15.landing-42"
    )
