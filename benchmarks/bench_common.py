"""What every benchmark of `make bench` shares: paired timing, process-tree memory, the
machine, and the commands our launcher would run.

Timings on shared machines are noisy, so each target is a ratio of medians of paired runs
measured in the same invocation; seconds are printed for scale only.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PILOT = ROOT.parent / "shared" / "data" / "cdisc_pilot"
PILOT_STUDY = "CDISCPILOT01"
PILOT_DELIVERY = "2024-01-15"
CLI = ROOT / ".venv" / "bin" / "clinical-platform"
PSEUDONYM_KEY = "bench-key"


@dataclass
class Result:
    """One row of the table: a target, its two medians and what they were measured on."""

    target: str
    baseline: float | None
    ours: float | None
    limit: float | None  # the ratio ours/baseline must not exceed; None = reported only
    note: str = ""
    unit: str = "s"
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.ours is None or self.baseline <= 0:
            return None
        return self.ours / self.baseline

    @property
    def verdict(self) -> str:
        if self.ratio is None:
            return "FAIL" if self.limit is not None else "-"
        if self.limit is None:
            return "info"
        return "PASS" if self.ratio <= self.limit else "FAIL"


class Budget:
    """The wall time `make bench` may take, shared out among the targets in order.

    Each target must be done by its cumulative share of the budget; a pair after the first is
    run only if one more pair, as long as the last one took, still ends by then. Slow runs of
    ours thus cost pairs, never the other targets' first pair.
    """

    def __init__(self, minutes: float) -> None:
        self.start = time.monotonic()
        self.seconds = minutes * 60

    def deadline(self, share_end: float) -> float:
        """Monotonic time by which the target ending at this share must be done."""
        return self.start + self.seconds * share_end if self.seconds > 0 else float("inf")

    def allows(self, share_end: float, next_seconds: float) -> bool:
        return time.monotonic() + next_seconds <= self.deadline(share_end)


def paired(
    baseline: Callable[[], float],
    ours: Callable[[], float],
    pairs: int,
    allows: Callable[[float], bool] = lambda _: True,
) -> tuple[list[float], list[float]]:
    """Run both up to `pairs` times, swapping which goes first each pair so drift hits both;
    a pair after the first only when `allows(seconds the last pair took)`."""
    base_times: list[float] = []
    our_times: list[float] = []
    for index in range(pairs):
        if index and not allows(base_times[-1] + our_times[-1]):
            print(f"    time budget: stopping after {index} pair(s)", flush=True)
            break
        if index % 2 == 0:
            base_times.append(baseline())
            our_times.append(ours())
        else:
            our_times.append(ours())
            base_times.append(baseline())
        last = f"baseline {base_times[-1]:.1f}s  ours {our_times[-1]:.1f}s"
        print(f"    pair {index + 1}/{pairs}: {last}", flush=True)
    return base_times, our_times


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# ---- memory of a process tree ------------------------------------------------------------


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as stat:
                # The command name may hold spaces; the parent id follows its closing bracket.
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _rss_and_name(pid: int) -> tuple[int, str]:
    """Resident memory in bytes and the executable's name (java, python, bash ...)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        rss = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
        return rss, fields.get("Name", "").strip()
    except (OSError, ValueError):
        return 0, ""


class TreeMemory:
    """Peak RSS of a process tree, sampled from /proc: the root process unless it is Java
    (Dagster, for `clinical-platform`) and the largest Java process (the Spark driver JVM)."""

    def __init__(self, root_pid: int, interval: float = 0.25) -> None:
        self.root_pid = root_pid
        self.interval = interval
        self.root_peak = 0
        self.jvm_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample_until_stopped(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        children = _children_by_parent()
        pending = [self.root_pid]
        while pending:
            pid = pending.pop()
            pending += children.get(pid, [])
            rss, name = _rss_and_name(pid)
            # spark-submit execs its JVM in place, so the root may itself be the driver.
            if name == "java":
                self.jvm_peak = max(self.jvm_peak, rss)
            elif pid == self.root_pid:
                self.root_peak = max(self.root_peak, rss)


@dataclass(frozen=True)
class Timed:
    seconds: float
    root_peak: int  # bytes
    jvm_peak: int  # bytes


def run_timed(command: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path = ROOT) -> Timed:
    """Run a command to completion, its output to `log`; fail in one line with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        start = time.perf_counter()
        process = subprocess.Popen(
            list(command), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
        with TreeMemory(process.pid) as memory:
            returncode = process.wait()
        seconds = time.perf_counter() - start
    if returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(
            f"{Path(command[0]).name} exited {returncode} (log {log}):\n" + "\n".join(tail)
        )
    return Timed(seconds, memory.root_peak, memory.jvm_peak)


# ---- the machine -------------------------------------------------------------------------


def machine() -> str:
    """Cores, memory, date and commit, for the table's header line."""
    memory = "?"
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            total_kb = int(meminfo.readline().split()[1])
        memory = f"{total_kb / 1024**2:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    sha = _git("rev-parse", "--short", "HEAD")
    dirty = (
        " + uncommitted changes" if _git("status", "--porcelain", "--untracked-files=no") else ""
    )
    cpus = len(os.sched_getaffinity(0))
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{cpus} cores, {memory} memory, {today}, git {sha}{dirty}"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


GIB = 1024**3


def gib(size: int) -> str:
    return f"{size / GIB:.2f} GiB"
