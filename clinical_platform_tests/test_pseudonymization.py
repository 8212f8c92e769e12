"""The demo pseudonym key serves the generated demo study only, never a real study's features."""

from __future__ import annotations

import pytest

from clinical_platform.clinical.assets import FEATURES_STAGE
from clinical_platform.launchers.base import SecretUnavailable
from clinical_platform.launchers.local import LocalSparkLauncher
from clinical_platform.pseudonymization import Pseudonymization
from clinical_platform.settings import DEMO_PSEUDONYM_KEY_VAR, PSEUDONYM_KEY_VAR

ARGUMENTS = ["--lake", "file:/tmp/lake", "--study", "S", "--delivery", "2024-01-01"]


@pytest.fixture
def demo_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """As `make ui` and `make demo` leave it: a demo key, no study key."""
    monkeypatch.delenv(PSEUDONYM_KEY_VAR, raising=False)
    monkeypatch.delenv(f"{PSEUDONYM_KEY_VAR}_SECRET_ID", raising=False)
    monkeypatch.setenv(DEMO_PSEUDONYM_KEY_VAR, "demo-key")


def test_the_demo_key_is_chosen_for_the_generated_study_alone(demo_only, monkeypatch) -> None:
    resource = Pseudonymization()
    assert resource.key_env_for({"SYNTH01"}) == DEMO_PSEUDONYM_KEY_VAR
    assert resource.key_env_for({"CDISCPILOT01"}) == PSEUDONYM_KEY_VAR
    assert resource.key_env_for({"SYNTH01", "CDISCPILOT01"}) == PSEUDONYM_KEY_VAR
    assert resource.key_env_for(set()) == PSEUDONYM_KEY_VAR
    monkeypatch.setenv(f"{PSEUDONYM_KEY_VAR}_SECRET_ID", "clinical/pseudonym-key")
    assert resource.key_env_for({"SYNTH01"}) == PSEUDONYM_KEY_VAR  # a real key always wins
    monkeypatch.delenv(f"{PSEUDONYM_KEY_VAR}_SECRET_ID")
    monkeypatch.setenv(PSEUDONYM_KEY_VAR, "study-key")
    assert resource.key_env_for({"SYNTH01"}) == PSEUDONYM_KEY_VAR


def test_a_real_study_without_its_key_is_refused_in_one_line(demo_only) -> None:
    launcher = LocalSparkLauncher(lake_uri="/tmp/lake")
    demo = FEATURES_STAGE.job(set(), ARGUMENTS, Pseudonymization(), {"SYNTH01"})
    assert demo.arguments[-2:] == ["--key-env", DEMO_PSEUDONYM_KEY_VAR]
    assert launcher.secret_environment(demo) == {DEMO_PSEUDONYM_KEY_VAR: "demo-key"}
    real = FEATURES_STAGE.job(set(), ARGUMENTS, Pseudonymization(), {"CDISCPILOT01"})
    assert real.arguments[-2:] == ["--key-env", PSEUDONYM_KEY_VAR]
    with pytest.raises(SecretUnavailable) as refused:
        launcher.secret_environment(real)
    assert str(refused.value).startswith(f"{PSEUDONYM_KEY_VAR} is not set: feature tables")
    assert "generated study SYNTH01 only" in str(refused.value)
