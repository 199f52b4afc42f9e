"""SIGINT trials on ``optiq attribute``: segfaults, SystemErrors, staging folders left, outputs intact.

Each trial starts ``optiq attribute`` on the same Parquet inputs and output folder (which holds the results
of one uninterrupted run), sends SIGINT after a random delay (uniform in ``[0.5, max_delay]`` seconds,
seeded) and records the exit code, whether the process died of SIGSEGV, whether stderr holds a
``SystemError`` (``_numba_unpickle returned a result with an exception set``), the ``.staging-*`` /
``.old-*`` folders left (removed after counting), and whether the visible outputs still equal the first
run's credit.

Usage::

    python -c "import optiq_engine as oq; d = oq.synthetic.generate(n_users=1_000_000, seed=7); \\
      d.touchpoints.write_parquet('tp.parquet'); d.conversions.write_parquet('cv.parquet')"
    python benchmarks/interrupt_trials.py --touchpoints tp.parquet --conversions cv.parquet --out out --trials 32

``PYTHONPATH=<another checkout>/src`` measures another version of the engine (the "before" figures).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def trial(command: list[str], out: Path, delay: float, reference: Any) -> dict[str, Any]:
    """One run of ``command`` interrupted after ``delay`` seconds; what it left behind."""
    import polars as pl

    t0 = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    left = [p for p in out.iterdir() if p.name.startswith((".staging-", ".old-"))]
    intact = pl.read_parquet(out / "credit.parquet").equals(reference)
    text = stderr.decode(errors="replace").strip()
    for path in left:  # each trial's leftovers counted once
        shutil.rmtree(path, ignore_errors=True)
    return {
        "delay": round(delay, 2),
        "exit_code": process.returncode,
        "segfault": process.returncode in (-signal.SIGSEGV, 128 + signal.SIGSEGV),
        "system_error": "SystemError" in text,
        "staging_left": len(left),
        "outputs_intact": intact,
        "seconds": round(time.time() - t0, 1),
        "last_line": text.splitlines()[-1][:160] if text else "",
    }


def main() -> None:
    import polars as pl

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--touchpoints", type=Path, required=True)
    parser.add_argument("--conversions", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--max-delay", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    command = [
        sys.executable,
        "-m",
        "optiq_engine.cli",
        "attribute",
        "--touchpoints",
        str(args.touchpoints),
        "--conversions",
        str(args.conversions),
        "--out",
        str(args.out),
    ]
    if not (args.out / "credit.parquet").exists():
        subprocess.run(command, check=True, capture_output=True)
    reference = pl.read_parquet(args.out / "credit.parquet")
    rng = random.Random(args.seed)
    rows = []
    for i in range(args.trials):
        row = {"trial": i, **trial(command, args.out, rng.uniform(0.5, args.max_delay), reference)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    codes = sorted({r["exit_code"] for r in rows})
    summary = {
        "trials": len(rows),
        "segfaults": sum(r["segfault"] for r in rows),
        "system_errors": sum(r["system_error"] for r in rows),
        "trials_with_staging_left": sum(r["staging_left"] > 0 for r in rows),
        "outputs_intact": sum(r["outputs_intact"] for r in rows),
        "exit_codes": {str(c): sum(r["exit_code"] == c for r in rows) for c in codes},
    }
    print("SUMMARY", json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
