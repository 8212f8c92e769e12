"""Contracts of the de-identified feature tables built from curated SDTM."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from spark_jobs.contracts.layout import CLINICAL_FAMILY
from spark_jobs.contracts.model import Column, ColumnType, Effect, Level, Rule, RuleKind

S = ColumnType.STRING
D = ColumnType.DOUBLE
I = ColumnType.INTEGER  # noqa: E741 - the SDTM "integer" column type

# Column names that would re-identify a subject if they ever reached a feature table.
IDENTIFYING_COLUMNS = ("USUBJID", "SUBJID", "SITEID", "INVID", "INVNAM", "BRTHDTC")


class FeatureCheck(StrEnum):
    """Checks of the feature tables (the Dagster check names)."""

    NO_IDENTIFIERS = "no_identifiers"
    ONE_ROW_PER_SUBJECT = "one_row_per_subject"
    ONE_ROW_PER_SUBJECT_DAY = "one_row_per_subject_day"
    ONE_ROW_PER_SAMPLE_GENE = "one_row_per_sample_gene"


Source = tuple[str, str]  # (curated dataset, column)

# Every feature table's first check: nothing in it identifies anyone.
NO_IDENTIFIERS_RULE = Rule(
    name=FeatureCheck.NO_IDENTIFIERS.value,
    kind=RuleKind.SCHEMA_DRIFT,
    level=Level.FILE,
    effect=Effect.BLOCK,
    description="No USUBJID or other identifying column and no date or timestamp column.",
)


def grain_rule(check: FeatureCheck, description: str) -> Rule:
    """A feature table's second check: one row per its grain (blocking)."""
    return Rule(
        name=check.value,
        kind=RuleKind.NATURAL_KEY,
        level=Level.PARTITION,
        effect=Effect.BLOCK,
        description=description,
    )


@dataclass(frozen=True)
class FeatureContract:
    """Columns and checks of one feature table (one row per `grain`).

    `lineage` names, for every column, the curated columns its value is computed from: the
    column lineage Dagster shows and the audit dossier prints. A test perturbs each curated
    column and checks that only the features listing it change.
    """

    name: str
    title: str
    description: str
    grain: str
    columns: tuple[Column, ...]
    upstream: tuple[str, ...]  # curated datasets it reads
    rules: tuple[Rule, ...]
    lineage: Mapping[str, tuple[Source, ...]] = field(default_factory=dict)
    family: str = CLINICAL_FAMILY

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _vital(code: str, label: str, unit: str) -> tuple[Column, ...]:
    return (
        Column(f"{code}_baseline", D, f"{label} at baseline (mean of VSBLFL=Y records), {unit}"),
        Column(f"{code}_last", D, f"{label} at the last post-baseline visit (mean), {unit}"),
        Column(f"{code}_change", D, f"{label} change from baseline to last visit, {unit}"),
    )


VITAL_TESTS = {"SYSBP": "sysbp", "DIABP": "diabp", "PULSE": "pulse"}
_VITAL_SOURCES = (("vs", "VSTESTCD"), ("vs", "VSSTRESN"), ("vs", "VSBLFL"), ("vs", "VISITNUM"))
_REFERENCE_DAY = ("dm", "RFSTDTC_DATE")
_DISPOSITION_EVENT = (("ds", "DSCAT"), ("ds", "DSSTDTC_DATE"), ("ds", "DSSEQ"))
SUBJECT_PROFILE_LINEAGE: dict[str, tuple[Source, ...]] = {
    "subject_pseudonym": (("dm", "STUDYID"), ("dm", "USUBJID")),
    "age": (("dm", "AGE"),),
    "sex": (("dm", "SEX"),),
    "race": (("dm", "RACE"),),
    "arm": (("dm", "ARM"),),
    **{
        f"{name}_{part}": _VITAL_SOURCES
        for name in VITAL_TESTS.values()
        for part in ("baseline", "last", "change")
    },
    "ae_count": (("ae", "USUBJID"),),
    "ae_mild_count": (("ae", "AESEV"),),
    "ae_moderate_count": (("ae", "AESEV"),),
    "ae_severe_count": (("ae", "AESEV"),),
    "ae_serious_count": (("ae", "AESER"),),
    "first_dose_study_day": (("ex", "EXSTDTC_DATE"), _REFERENCE_DAY),
    "last_dose_study_day": (("ex", "EXSTDTC_DATE"), ("ex", "EXENDTC_DATE"), _REFERENCE_DAY),
    "treatment_duration_days": (("ex", "EXSTDTC_DATE"), ("ex", "EXENDTC_DATE")),
    "lab_out_of_range_count": (
        ("lb", "LBSTRESN"),
        ("lb", "LBSTNRLO"),
        ("lb", "LBSTNRHI"),
        ("lb", "LBNRIND"),
    ),
    "disposition": (*_DISPOSITION_EVENT, ("ds", "DSDECOD")),
    "disposition_reason": (*_DISPOSITION_EVENT, ("ds", "DSDECOD")),
    "disposition_study_day": (*_DISPOSITION_EVENT, _REFERENCE_DAY),
}

SUBJECT_PROFILE = FeatureContract(
    name="subject_profile",
    title="Subject profile",
    description="One row per subject: demographics, arm, vital-sign change from baseline, "
    "adverse-event counts, exposure, abnormal labs and disposition. De-identified: a keyed "
    "HMAC pseudonym instead of USUBJID, study days instead of dates, ages above 89 capped at 90.",
    grain="subject",
    columns=(
        Column("subject_pseudonym", S, "HMAC-SHA256 of STUDYID/USUBJID under the study's key"),
        Column("age", D, "Age in years at reference start; 90 means 90 or older"),
        Column("sex", S, "SEX"),
        Column("race", S, "RACE"),
        Column("arm", S, "Planned arm (ARM)"),
        *_vital("sysbp", "Systolic blood pressure", "mmHg"),
        *_vital("diabp", "Diastolic blood pressure", "mmHg"),
        *_vital("pulse", "Pulse rate", "beats/min"),
        Column("ae_count", I, "Adverse events reported"),
        Column("ae_mild_count", I, "Adverse events with AESEV=MILD"),
        Column("ae_moderate_count", I, "Adverse events with AESEV=MODERATE"),
        Column("ae_severe_count", I, "Adverse events with AESEV=SEVERE"),
        Column("ae_serious_count", I, "Adverse events with AESER=Y"),
        Column("first_dose_study_day", I, "Study day of the first exposure record"),
        Column("last_dose_study_day", I, "Study day of the end of the last exposure record"),
        Column("treatment_duration_days", I, "Days from first dose to last dose, inclusive"),
        Column(
            "lab_out_of_range_count",
            I,
            "Lab results outside their reference range (numeric or by LBNRIND)",
        ),
        Column("disposition", S, "completed, discontinued, screen_failure or ongoing"),
        Column("disposition_reason", S, "DSDECOD of the disposition event"),
        Column("disposition_study_day", I, "Study day of the disposition event"),
    ),
    upstream=("dm", "ae", "vs", "lb", "ex", "ds"),
    rules=(
        NO_IDENTIFIERS_RULE,
        grain_rule(
            FeatureCheck.ONE_ROW_PER_SUBJECT,
            "Exactly one row per curated DM subject, pseudonyms unique.",
        ),
    ),
    lineage=SUBJECT_PROFILE_LINEAGE,
)

FEATURE_CONTRACTS: tuple[FeatureContract, ...] = (SUBJECT_PROFILE,)
