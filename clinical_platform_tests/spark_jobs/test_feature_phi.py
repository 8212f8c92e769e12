"""Level 1: the blocking PHI check of the feature tables, by name and by value.

A feature column is refused when its name says it identifies someone, or when its values do:
any value equal to a subject's USUBJID or SUBJID, or most values looking like e-mail
addresses, phone numbers, names, calendar dates or free text.
"""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from clinical_platform_tests.spark_jobs.test_subject_profile import KEY, frames
from spark_jobs.features import PROFILE, no_identifiers, subject_ids, text_columns
from spark_jobs.quality.identifiers import SUBJECT_ID, identifying_values
from spark_jobs.subject_profile import identifying_columns, pseudonymizer, subject_profile


def dm_ids(spark: SparkSession):
    dm = spark.createDataFrame(
        [("01-701-1015", "1015"), ("01-701-1023", "1023")], "USUBJID string, SUBJID string"
    )
    return subject_ids(dm)


def test_the_real_profile_has_no_identifying_column_or_value(spark: SparkSession) -> None:
    inputs = frames(spark)
    built = subject_profile(inputs, pseudonymizer(KEY))
    assert identifying_columns(built) == []
    found = identifying_values(built, text_columns(PROFILE), subject_ids(inputs["dm"]))
    assert found == {}
    assert text_columns(PROFILE) == [
        "subject_pseudonym",
        "sex",
        "race",
        "arm",
        "disposition",
        "disposition_reason",
    ]


def test_identifying_values_are_named_with_their_kind(spark: SparkSession) -> None:
    rows = [
        ("a@site.org", "01-701-1015", "2013-07-01", "Jane Doe", "+1 919 555 0100", "M"),
        ("b@site.org", "WHITE", "14JUL2014", "John Smith", "(919) 555-0101", "F"),
        ("c@site.org", "WHITE", "07/15/2014", "Ann Lee", "919.555.0102", "M"),
        (
            "d@site.org",
            "ASIAN",
            "2014-08-01T10:00",
            "Placebo",
            "919-555-0103",
            "patient said she felt dizzy after the second dose",
        ),
    ]
    columns = ["email", "race", "visit", "name", "phone", "notes"]
    frame = spark.createDataFrame(rows, ", ".join(f"{c} string" for c in columns))
    found = identifying_values(frame, columns, dm_ids(spark))
    assert found == {
        "email": "e-mail address",
        "name": "patient name",
        "phone": "phone number",
        "race": SUBJECT_ID,  # one USUBJID is enough
        "visit": "calendar date",
    }
    # One narrative among four is not a free-text column; four of them are.
    narrative = "the subject reported a mild headache on the morning of day three"
    prose = frame.withColumn("notes", F.lit(narrative))
    assert identifying_values(prose, ["notes", "race"], None) == {"notes": "free text"}


def test_a_minority_of_name_like_codes_is_not_a_leak(spark: SparkSession) -> None:
    """ARM holds "Screen Failure" for some subjects: two capitalised words, like a name."""
    arms = ["Placebo", "Screen Failure", "Xanomeline High Dose", "Xanomeline Low Dose"]
    frame = spark.createDataFrame([(a, "1015x") for a in arms], "arm string, code string")
    assert identifying_values(frame, ["arm", "code"], dm_ids(spark)) == {}


def test_subject_ids_include_subjid_when_delivered(spark: SparkSession) -> None:
    ids = sorted(r["id"] for r in dm_ids(spark).collect())
    assert ids == ["01-701-1015", "01-701-1023", "1015", "1023"]
    only_usubjid = spark.createDataFrame([("S1",), (None,)], "USUBJID string")
    assert [r["id"] for r in subject_ids(only_usubjid).collect()] == ["S1"]


def test_the_check_fails_by_name_or_by_value_and_says_which(spark: SparkSession) -> None:
    built = subject_profile(frames(spark), pseudonymizer(KEY))
    leaky = built.withColumn("EMAIL", F.lit("x@y.org")).withColumn("PatName", F.lit("A B"))
    assert identifying_columns(leaky) == ["EMAIL", "PatName"]
    by_name = no_identifiers(identifying_columns(leaky))
    assert not by_name.passed and by_name.blocking
    assert by_name.metadata == {"identifying_columns": ["EMAIL", "PatName"]}
    by_value = no_identifiers([], {"race": SUBJECT_ID})
    assert not by_value.passed
    assert by_value.metadata == {
        "identifying_columns": ["race"],
        "identifying_values": {"race": SUBJECT_ID},
    }
    clean = no_identifiers([], {})
    assert clean.passed and clean.metadata["identifying_values"] == {}
