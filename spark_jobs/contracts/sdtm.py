"""SDTM domain contracts (SDTMIG 3.x subset) for the clinical source family.

Types follow what the curated zone promises: --SEQ, --DY and VISITDY are integers, results and
VISITNUM are doubles, --DTC are ISO 8601 text parsed into a date and a precision. Controlled
terminology lists the CDISC submission values we normalise to (matching ignores case and
surrounding blanks).
"""

from __future__ import annotations

from spark_jobs.contracts.model import Column, ColumnType, DatasetContract, PlausibleRange
from spark_jobs.contracts.rules import with_standard_rules

S = ColumnType.STRING
D = ColumnType.DOUBLE
I = ColumnType.INTEGER  # noqa: E741 - the SDTM "integer" column type
DT = ColumnType.DATETIME

NY = ("N", "Y")
NY_U_NA = ("N", "Y", "U", "NA")
EPOCHS = (
    "SCREENING",
    "RUN-IN",
    "TREATMENT",
    "FOLLOW-UP",
    "WASHOUT",
    "BASELINE",
    "LONG-TERM FOLLOW-UP",
)
TEXT = 200  # SAS XPORT v5 limit for a character variable


def identifiers(domain: str) -> tuple[Column, ...]:
    """STUDYID, DOMAIN, USUBJID: required in every domain."""
    return (
        Column("STUDYID", S, "Study Identifier", required=True, max_length=40),
        Column(
            "DOMAIN", S, "Domain Abbreviation", required=True, max_length=2, terminology=(domain,)
        ),
        Column("USUBJID", S, "Unique Subject Identifier", required=True, max_length=40),
    )


def visit_columns() -> tuple[Column, ...]:
    return (
        Column("VISITNUM", D, "Visit Number", round_digits=6),
        Column("VISIT", S, "Visit Name", max_length=TEXT),
        Column("VISITDY", I, "Planned Study Day of Visit"),
        Column("EPOCH", S, "Epoch", max_length=TEXT, terminology=EPOCHS),
    )


DM = with_standard_rules(
    DatasetContract(
        name="dm",
        domain="DM",
        title="Demographics",
        description="One row per subject: reference dates, demographics, planned and actual arm.",
        columns=(
            *identifiers("DM"),
            Column("SUBJID", S, "Subject Identifier for the Study", required=True, max_length=40),
            Column("RFSTDTC", DT, "Subject Reference Start Date/Time"),
            Column("RFENDTC", DT, "Subject Reference End Date/Time"),
            Column("RFXSTDTC", DT, "Date/Time of First Study Treatment"),
            Column("RFXENDTC", DT, "Date/Time of Last Study Treatment"),
            Column("RFICDTC", DT, "Date/Time of Informed Consent"),
            Column("RFPENDTC", DT, "Date/Time of End of Participation"),
            Column("DTHDTC", DT, "Date/Time of Death"),
            Column("DTHFL", S, "Subject Death Flag", max_length=1, terminology=("Y",)),
            Column("SITEID", S, "Study Site Identifier", required=True, max_length=40),
            Column("AGE", D, "Age"),
            Column(
                "AGEU",
                S,
                "Age Units",
                max_length=10,
                terminology=("YEARS", "MONTHS", "WEEKS", "DAYS", "HOURS"),
            ),
            Column(
                "SEX",
                S,
                "Sex",
                required=True,
                max_length=16,
                terminology=("M", "F", "U", "UNDIFFERENTIATED"),
            ),
            Column(
                "RACE",
                S,
                "Race",
                max_length=TEXT,
                terminology=(
                    "AMERICAN INDIAN OR ALASKA NATIVE",
                    "ASIAN",
                    "BLACK OR AFRICAN AMERICAN",
                    "NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER",
                    "WHITE",
                    "MULTIPLE",
                    "OTHER",
                    "UNKNOWN",
                    "NOT REPORTED",
                ),
            ),
            Column(
                "ETHNIC",
                S,
                "Ethnicity",
                max_length=TEXT,
                terminology=(
                    "HISPANIC OR LATINO",
                    "NOT HISPANIC OR LATINO",
                    "NOT REPORTED",
                    "UNKNOWN",
                ),
            ),
            Column("ARMCD", S, "Planned Arm Code", required=True, max_length=20),
            Column("ARM", S, "Description of Planned Arm", required=True, max_length=TEXT),
            Column("ACTARMCD", S, "Actual Arm Code", max_length=20),
            Column("ACTARM", S, "Description of Actual Arm", max_length=TEXT),
            Column("COUNTRY", S, "Country", max_length=3),
            Column("DMDTC", DT, "Date/Time of Collection"),
            Column("DMDY", I, "Study Day of Collection"),
        ),
        natural_key=("USUBJID",),
        file_stems=("dm",),
        date_pairs=(("RFSTDTC", "RFENDTC"), ("RFXSTDTC", "RFXENDTC")),
        references_dm=False,
    )
)

AE = with_standard_rules(
    DatasetContract(
        name="ae",
        domain="AE",
        title="Adverse Events",
        description="One row per adverse event per subject, coded to MedDRA, with severity, "
        "seriousness and outcome.",
        columns=(
            *identifiers("AE"),
            Column("AESEQ", I, "Sequence Number", required=True),
            Column("AESPID", S, "Sponsor-Defined Identifier", max_length=TEXT),
            Column(
                "AETERM", S, "Reported Term for the Adverse Event", required=True, max_length=TEXT
            ),
            Column("AELLT", S, "Lowest Level Term", max_length=TEXT),
            Column("AELLTCD", I, "Lowest Level Term Code"),
            Column("AEDECOD", S, "Dictionary-Derived Term", required=True, max_length=TEXT),
            Column("AEPTCD", I, "Preferred Term Code"),
            Column("AEHLT", S, "High Level Term", max_length=TEXT),
            Column("AEHLTCD", I, "High Level Term Code"),
            Column("AEHLGT", S, "High Level Group Term", max_length=TEXT),
            Column("AEHLGTCD", I, "High Level Group Term Code"),
            Column("AEBODSYS", S, "Body System or Organ Class", max_length=TEXT),
            Column("AEBDSYCD", I, "Body System or Organ Class Code"),
            Column("AESOC", S, "Primary System Organ Class", max_length=TEXT),
            Column("AESOCCD", I, "Primary System Organ Class Code"),
            Column(
                "AESEV",
                S,
                "Severity/Intensity",
                max_length=10,
                terminology=("MILD", "MODERATE", "SEVERE"),
            ),
            Column("AESER", S, "Serious Event", max_length=1, terminology=NY),
            Column("AEACN", S, "Action Taken with Study Treatment", max_length=TEXT),
            Column("AEREL", S, "Causality", max_length=TEXT),
            Column(
                "AEOUT",
                S,
                "Outcome of Adverse Event",
                max_length=TEXT,
                terminology=(
                    "RECOVERED/RESOLVED",
                    "RECOVERING/RESOLVING",
                    "NOT RECOVERED/NOT RESOLVED",
                    "RECOVERED/RESOLVED WITH SEQUELAE",
                    "FATAL",
                    "UNKNOWN",
                ),
            ),
            Column("AESCAN", S, "Involves Cancer", max_length=2, terminology=NY_U_NA),
            Column(
                "AESCONG",
                S,
                "Congenital Anomaly or Birth Defect",
                max_length=2,
                terminology=NY_U_NA,
            ),
            Column(
                "AESDISAB",
                S,
                "Persist or Signif Disability/Incapacity",
                max_length=2,
                terminology=NY_U_NA,
            ),
            Column("AESDTH", S, "Results in Death", max_length=2, terminology=NY_U_NA),
            Column(
                "AESHOSP",
                S,
                "Requires or Prolongs Hospitalization",
                max_length=2,
                terminology=NY_U_NA,
            ),
            Column("AESLIFE", S, "Is Life Threatening", max_length=2, terminology=NY_U_NA),
            Column("AESOD", S, "Occurred with Overdose", max_length=2, terminology=NY_U_NA),
            Column("EPOCH", S, "Epoch", max_length=TEXT, terminology=EPOCHS),
            Column("AEDTC", DT, "Date/Time of Collection"),
            Column("AESTDTC", DT, "Start Date/Time of Adverse Event"),
            Column("AEENDTC", DT, "End Date/Time of Adverse Event"),
            Column("AEDY", I, "Study Day of Collection"),
            Column("AESTDY", I, "Study Day of Start of Adverse Event"),
            Column("AEENDY", I, "Study Day of End of Adverse Event"),
        ),
        natural_key=("USUBJID", "AESEQ"),
        file_stems=("ae",),
        date_pairs=(("AESTDTC", "AEENDTC"),),
    )
)

VS = with_standard_rules(
    DatasetContract(
        name="vs",
        domain="VS",
        title="Vital Signs",
        description="One row per vital sign measurement per time point, visit and subject.",
        columns=(
            *identifiers("VS"),
            Column("VSSEQ", I, "Sequence Number", required=True),
            Column(
                "VSTESTCD",
                S,
                "Vital Signs Test Short Name",
                required=True,
                max_length=8,
                terminology=(
                    "SYSBP",
                    "DIABP",
                    "PULSE",
                    "HR",
                    "TEMP",
                    "RESP",
                    "WEIGHT",
                    "HEIGHT",
                    "BMI",
                    "OXYSAT",
                ),
            ),
            Column("VSTEST", S, "Vital Signs Test Name", required=True, max_length=40),
            Column(
                "VSPOS",
                S,
                "Vital Signs Position of Subject",
                max_length=TEXT,
                terminology=("SUPINE", "STANDING", "SITTING", "SEMI-RECUMBENT", "PRONE"),
            ),
            Column("VSORRES", S, "Result or Finding in Original Units", max_length=TEXT),
            Column("VSORRESU", S, "Original Units", max_length=TEXT),
            Column("VSSTRESC", S, "Character Result/Finding in Std Format", max_length=TEXT),
            Column("VSSTRESN", D, "Numeric Result/Finding in Standard Units"),
            Column("VSSTRESU", S, "Standard Units", max_length=TEXT),
            Column("VSSTAT", S, "Completion Status", max_length=8, terminology=("NOT DONE",)),
            Column("VSLOC", S, "Location of Vital Signs Measurement", max_length=TEXT),
            Column("VSBLFL", S, "Baseline Flag", max_length=1, terminology=("Y",)),
            *visit_columns(),
            Column("VSDTC", DT, "Date/Time of Measurements"),
            Column("VSDY", I, "Study Day of Vital Signs"),
            Column("VSTPT", S, "Planned Time Point Name", max_length=TEXT),
            Column("VSTPTNUM", D, "Planned Time Point Number", round_digits=6),
            Column("VSELTM", S, "Planned Elapsed Time from Time Point Ref", max_length=TEXT),
            Column("VSTPTREF", S, "Time Point Reference", max_length=TEXT),
        ),
        natural_key=("USUBJID", "VSSEQ"),
        file_stems=("vs",),
        test_code_column="VSTESTCD",
        result_column="VSSTRESN",
        unit_column="VSSTRESU",
        standard_units={
            "SYSBP": "mmHg",
            "DIABP": "mmHg",
            "PULSE": "beats/min",
            "HR": "beats/min",
            "TEMP": "C",
            "RESP": "breaths/min",
            "WEIGHT": "kg",
            "HEIGHT": "cm",
            "BMI": "kg/m2",
            "OXYSAT": "%",
        },
        plausible_ranges=(
            PlausibleRange("SYSBP", 40, 300, "mmHg"),
            PlausibleRange("DIABP", 20, 200, "mmHg"),
            PlausibleRange("PULSE", 20, 250, "beats/min"),
            PlausibleRange("HR", 20, 250, "beats/min"),
            PlausibleRange("TEMP", 30, 45, "C"),
            PlausibleRange("RESP", 4, 80, "breaths/min"),
            PlausibleRange("WEIGHT", 1, 500, "kg"),
            PlausibleRange("HEIGHT", 30, 272, "cm"),
            PlausibleRange("OXYSAT", 50, 100, "%"),
        ),
    )
)

LB = with_standard_rules(
    DatasetContract(
        name="lb",
        domain="LB",
        title="Laboratory Test Results",
        description="One row per lab test per visit and subject; chemistry, hematology and "
        "urinalysis files (lb*.xpt) fold into this one domain.",
        columns=(
            *identifiers("LB"),
            Column("LBSEQ", I, "Sequence Number", required=True),
            Column(
                "LBTESTCD", S, "Lab Test or Examination Short Name", required=True, max_length=8
            ),
            Column("LBTEST", S, "Lab Test or Examination Name", required=True, max_length=40),
            Column("LBCAT", S, "Category for Lab Test", max_length=TEXT),
            Column("LBORRES", S, "Result or Finding in Original Units", max_length=TEXT),
            Column("LBORRESU", S, "Original Units", max_length=TEXT),
            Column("LBORNRLO", S, "Reference Range Lower Limit in Orig Unit", max_length=TEXT),
            Column("LBORNRHI", S, "Reference Range Upper Limit in Orig Unit", max_length=TEXT),
            Column("LBSTRESC", S, "Character Result/Finding in Std Format", max_length=TEXT),
            Column("LBSTRESN", D, "Numeric Result/Finding in Standard Units"),
            Column("LBSTRESU", S, "Standard Units", max_length=TEXT),
            Column("LBSTNRLO", D, "Reference Range Lower Limit-Std Units"),
            Column("LBSTNRHI", D, "Reference Range Upper Limit-Std Units"),
            Column(
                "LBNRIND",
                S,
                "Reference Range Indicator",
                max_length=TEXT,
                terminology=("NORMAL", "ABNORMAL", "HIGH", "LOW", "HIGH HIGH", "LOW LOW"),
            ),
            Column("LBBLFL", S, "Baseline Flag", max_length=1, terminology=("Y",)),
            *visit_columns(),
            Column("LBDTC", DT, "Date/Time of Specimen Collection"),
            Column("LBDY", I, "Study Day of Specimen Collection"),
        ),
        natural_key=("USUBJID", "LBSEQ"),
        file_stems=("lb",),  # any lb*.xpt: lb, lbch, lbhe, lbur ...
        test_code_column="LBTESTCD",
        result_column="LBSTRESN",
        unit_column="LBSTRESU",
        reference_range=("LBSTNRLO", "LBSTNRHI"),
    )
)

EX = with_standard_rules(
    DatasetContract(
        name="ex",
        domain="EX",
        title="Exposure",
        description="One row per constant-dosing interval of study treatment per subject.",
        columns=(
            *identifiers("EX"),
            Column("EXSEQ", I, "Sequence Number", required=True),
            Column("EXTRT", S, "Name of Treatment", required=True, max_length=TEXT),
            Column("EXDOSE", D, "Dose"),
            Column("EXDOSU", S, "Dose Units", max_length=TEXT),
            Column("EXDOSFRM", S, "Dose Form", max_length=TEXT),
            Column("EXDOSFRQ", S, "Dosing Frequency per Interval", max_length=TEXT),
            Column("EXROUTE", S, "Route of Administration", max_length=TEXT),
            *visit_columns(),
            Column("EXSTDTC", DT, "Start Date/Time of Treatment"),
            Column("EXENDTC", DT, "End Date/Time of Treatment"),
            Column("EXSTDY", I, "Study Day of Start of Treatment"),
            Column("EXENDY", I, "Study Day of End of Treatment"),
        ),
        natural_key=("USUBJID", "EXSEQ"),
        file_stems=("ex",),
        date_pairs=(("EXSTDTC", "EXENDTC"),),
    )
)

DS = with_standard_rules(
    DatasetContract(
        name="ds",
        domain="DS",
        title="Disposition",
        description="Disposition events and protocol milestones per subject.",
        columns=(
            *identifiers("DS"),
            Column("DSSEQ", I, "Sequence Number", required=True),
            Column("DSSPID", S, "Sponsor-Defined Identifier", max_length=TEXT),
            Column(
                "DSTERM",
                S,
                "Reported Term for the Disposition Event",
                required=True,
                max_length=TEXT,
            ),
            Column("DSDECOD", S, "Standardized Disposition Term", required=True, max_length=TEXT),
            Column(
                "DSCAT",
                S,
                "Category for Disposition Event",
                max_length=TEXT,
                terminology=("DISPOSITION EVENT", "PROTOCOL MILESTONE", "OTHER EVENT"),
            ),
            Column("VISITNUM", D, "Visit Number", round_digits=6),
            Column("VISIT", S, "Visit Name", max_length=TEXT),
            Column("EPOCH", S, "Epoch", max_length=TEXT, terminology=EPOCHS),
            Column("DSDTC", DT, "Date/Time of Collection"),
            Column("DSSTDTC", DT, "Start Date/Time of Disposition Event"),
            Column("DSDY", I, "Study Day of Collection"),
            Column("DSSTDY", I, "Study Day of Start of Disposition Event"),
        ),
        natural_key=("USUBJID", "DSSEQ"),
        file_stems=("ds",),
    )
)

SV = with_standard_rules(
    DatasetContract(
        name="sv",
        domain="SV",
        title="Subject Visits",
        description="One row per subject per actual visit, with start and end dates.",
        columns=(
            *identifiers("SV"),
            Column("VISITNUM", D, "Visit Number", required=True, round_digits=6),
            Column("VISIT", S, "Visit Name", max_length=TEXT),
            Column("VISITDY", I, "Planned Study Day of Visit"),
            Column("EPOCH", S, "Epoch", max_length=TEXT, terminology=EPOCHS),
            Column("SVSTDTC", DT, "Start Date/Time of Visit"),
            Column("SVENDTC", DT, "End Date/Time of Visit"),
            Column("SVSTDY", I, "Study Day of Start of Visit"),
            Column("SVENDY", I, "Study Day of End of Visit"),
            Column("SVUPDES", S, "Description of Unplanned Visit", max_length=TEXT),
        ),
        natural_key=("USUBJID", "VISITNUM"),
        file_stems=("sv",),
        date_pairs=(("SVSTDTC", "SVENDTC"),),
    )
)

SDTM_CONTRACTS: tuple[DatasetContract, ...] = (DM, AE, VS, LB, EX, DS, SV)
