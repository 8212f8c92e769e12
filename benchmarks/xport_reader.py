"""Our SAS XPORT reader against pyreadstat, on the pilot's files and on one 10x larger file.

    .venv/bin/python benchmarks/xport_reader.py [--pilot DIR] [--repeat 3]

Prints, per file, the median seconds of:
  ours:        structural validation plus decoding every row to Python tuples (what the
               ingest tasks hand to Spark);
  pyreadstat:  decoding to a pandas DataFrame (its C reader, no validation of truncation);
  +tuples:     the same frame turned into tuples, the form Spark needs from a Python reader,
and the ratio ours / pyreadstat+tuples. Then the peak Python memory of validating the large
file whole against streaming it in 8 MiB chunks (the scanner the ingest uses).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyreadstat  # noqa: E402

from clinical_platform.generators.xport_writer import write_xport  # noqa: E402
from spark_jobs.formats import xport  # noqa: E402
from spark_jobs.storage.byte_ranges import chunks, open_ranges  # noqa: E402

FILES = ("ae.xpt", "vs.xpt", "lbch.xpt")


def median_seconds(work: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def ours(path: Path) -> int:
    data = path.read_bytes()
    return sum(1 for _ in xport.iter_rows(data, xport.inspect(data)))


def pyreadstat_frame(path: Path) -> int:
    frame: Any = pyreadstat.read_xport(str(path))[0]
    return len(frame)


def pyreadstat_tuples(path: Path) -> int:
    frame: Any = pyreadstat.read_xport(str(path))[0]
    return sum(1 for _ in frame.itertuples(index=False, name=None))


def enlarged(source: Path, times: int, folder: Path) -> Path:
    """The file's rows `times` over, written by our writer (the same variables)."""
    data = source.read_bytes()
    layout = xport.inspect(data)
    rows = list(xport.iter_rows(data, layout))
    variables = [(v.name, v.kind, 8 if v.kind == "numeric" else v.length, v.label[:40])
                 for v in layout.header.variables]  # fmt: skip
    target = folder / f"x{times}_{source.name}"
    with target.open("wb") as out:
        write_xport(out, layout.header.dataset_name or "DATA", variables, rows * times)
    return target


def peak_bytes(work: Callable[[], object]) -> int:
    tracemalloc.start()
    work()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def stream(path: Path) -> xport.XportLayout:
    size = path.stat().st_size
    scanner = xport.XportScanner(size)
    with open_ranges(f"file:{path}") as reader:
        for chunk in chunks(reader, size):
            scanner.feed(chunk)
    return scanner.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pilot", default=str(ROOT.parent / "shared" / "data" / "cdisc_pilot"))
    parser.add_argument("--repeat", type=int, default=3)
    ns = parser.parse_args()
    pilot = Path(ns.pilot)
    with tempfile.TemporaryDirectory(prefix="xport-bench-") as tmp:
        paths = [pilot / name for name in FILES] + [enlarged(pilot / "lbch.xpt", 10, Path(tmp))]
        for path in paths:
            assert ours(path) == pyreadstat_frame(path), path
            mine = median_seconds(lambda p=path: ours(p), ns.repeat)
            frame = median_seconds(lambda p=path: pyreadstat_frame(p), ns.repeat)
            tuples = median_seconds(lambda p=path: pyreadstat_tuples(p), ns.repeat)
            size = path.stat().st_size / 2**20
            print(
                f"{path.name:>14} {size:6.1f} MiB  ours {mine:6.3f}s  pyreadstat {frame:6.3f}s "
                f"+tuples {tuples:6.3f}s  ours/(pyreadstat+tuples) = {mine / tuples:.2f}"
            )
        large = paths[-1]
        whole = peak_bytes(lambda: xport.inspect(large.read_bytes()))
        streamed = peak_bytes(lambda: stream(large))
        print(
            f"validating {large.name} ({large.stat().st_size / 2**20:.0f} MiB): peak memory "
            f"whole {whole / 2**20:.0f} MiB, streamed {streamed / 2**20:.0f} MiB "
            f"(ratio {streamed / whole:.2f})"
        )


if __name__ == "__main__":
    main()
