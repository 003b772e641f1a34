"""Time ``medstyle phantom OUT_DIR --patients 100 --seed 0 --size 256 --slices 88``.

The target: under 5 minutes on a 2-core machine. Run from the repository root:

    python benchmarks/bench_phantom.py                # the 100-patient command
    python benchmarks/bench_phantom.py --patients 10  # a quicker look

The cohort is written to a temporary folder and deleted afterwards (``--keep DIR``
writes it there instead and keeps it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from medstyle_gui.cli import main


def run(patients: int, size: int, slices: int, workers: int | None, keep: Path | None) -> float:
    """Seconds taken by one ``medstyle phantom`` run."""
    tmp = None
    if keep is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench_phantom_"))
        out = tmp / "cohort"
    else:
        out = keep
    args = ["phantom", str(out), "--patients", str(patients), "--seed", "0"]
    args += ["--size", str(size), "--slices", str(slices), "--quiet"]
    if workers:
        args += ["--workers", str(workers)]
    try:
        start = time.perf_counter()
        status = main(args)
        seconds = time.perf_counter() - start
        if status != 0:
            sys.exit(status)
        mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
        print(f"wrote {patients} studies, {mb:.0f} MB")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return seconds


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--slices", type=int, default=88)
    parser.add_argument("--workers", type=int, help="processes (default: one per CPU)")
    parser.add_argument("--keep", type=Path, help="write the cohort here and keep it")
    args = parser.parse_args()
    seconds = run(args.patients, args.size, args.slices, args.workers, args.keep)
    cpus = os.cpu_count()
    print(
        f"medstyle phantom --patients {args.patients} --size {args.size} --slices {args.slices}: "
        f"{seconds:.1f} s ({seconds / args.patients:.2f} s per patient, {cpus} CPUs)"
    )


if __name__ == "__main__":
    cli()
