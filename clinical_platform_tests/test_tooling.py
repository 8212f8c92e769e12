"""The entry points a new user and CI rely on: prerequisite checks and .ci/run's exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from clinical_platform_tests.conftest import PROJECT_ROOT


def fake_bin(folder: Path, programs: dict[str, str]) -> str:
    """A PATH holding only the given shell-script programs plus the basic tools."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in programs.items():
        script = folder / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    for tool in ("awk", "cut", "cat", "env", "sh", "bash"):
        target = subprocess.run(
            ["bash", "-c", f"command -v {tool}"], capture_output=True, text=True
        ).stdout.strip()
        if target and not (folder / tool).exists():
            (folder / tool).symlink_to(target)
    return str(folder)


def run_check(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/check-prerequisites.sh"],
        cwd=PROJECT_ROOT,
        env={"PATH": path, "HOME": os.environ.get("HOME", "/tmp")},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_prerequisites_pass_here() -> None:
    done = run_check(os.environ["PATH"])
    assert done.returncode == 0, done.stderr


def test_missing_java_is_one_clear_line(tmp_path: Path) -> None:
    path = fake_bin(tmp_path / "bin", {"python3": f'exec "{sys.executable}" "$@"'})
    done = run_check(path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Java 17 is required by Spark and 'java' is not on PATH (install openjdk-17-jre-headless)."
    ]


def test_old_java_and_old_python_are_named(tmp_path: Path) -> None:
    path = fake_bin(
        tmp_path / "bin",
        {
            "java": "echo 'openjdk version \"11.0.21\" 2023-10-17' >&2",
            "python3": "exit 1",  # too old: the version probe fails
        },
    )
    done = run_check(path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("Python 3.11 or newer is required")
    assert lines[1] == (
        "Java 17 or newer is required by Spark; found Java 11.0.21 "
        "(install openjdk-17-jre-headless)."
    )


def ci_run(tmp_path: Path, make: str) -> subprocess.CompletedProcess[str]:
    path = fake_bin(tmp_path / "bin", {"make": make})
    return subprocess.run(
        ["bash", ".ci/run"],
        cwd=PROJECT_ROOT,
        env={"PATH": f"{path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ci_run_returns_the_test_status(tmp_path: Path) -> None:
    """Both targets run; the first failure's status is CI's (the suite's before the lane's)."""
    done = ci_run(tmp_path / "both", 'echo "make $*"; [ "$1" = test ] && exit 3; exit 4')
    assert done.returncode == 3
    assert done.stdout.split() == ["make", "test", "make", "test-emr-spark"]
    lane_only = ci_run(tmp_path / "lane", 'echo "make $*"; [ "$1" = test ] && exit 0; exit 4')
    assert lane_only.returncode == 4
    passed = ci_run(tmp_path / "none", 'echo "make $*"; exit 0')
    assert passed.returncode == 0


def test_missing_maven_is_one_clear_line(tmp_path: Path) -> None:
    """Maven is needed once, to fetch Spark's jars; without it setup says so in one line."""
    path = fake_bin(tmp_path / "bin", {})
    done = subprocess.run(
        ["bash", "scripts/check-maven.sh"],
        cwd=PROJECT_ROOT,
        env={"PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Maven is required once to fetch Spark's jars (Iceberg, hadoop-aws, SQLite JDBC) and "
        "'mvn' is not on PATH (install maven)."
    ]
    with_maven = fake_bin(tmp_path / "bin2", {"mvn": "exit 0"})
    assert (
        subprocess.run(
            ["bash", "scripts/check-maven.sh"], cwd=PROJECT_ROOT, env={"PATH": with_maven}
        ).returncode
        == 0
    )
