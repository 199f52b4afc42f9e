"""Benchmark attribute() against the DuckDB and plain-Polars baselines; write the "attribute" section of a RESULTS.md.

Usage: ``python -m benchmarks.run [--sizes 1000000,10000000] [--repeats 3] [--out out/RESULTS.md]``
(sizes are touchpoint counts; the synthetic generator makes about 5 per user and 1 conversion per 10).
The section and ``results.json`` go to ``out/`` (untracked) unless ``--out`` names another file: the
recorded figures of ``benchmarks/RESULTS.md`` change only with ``--out benchmarks/RESULTS.md``.

Every figure is measured in this run, on this machine: the median of ``repeats`` runs after a warm-up
(the DuckDB baseline too; the Polars one runs once), peak memory in a fresh process (``benchmarks/memory.py``),
Numba compile time in a fresh process with the on-disk cache off, cached start-up in a fresh process with it on.
The DuckDB baseline (``benchmarks/duckdb_baseline.py``) runs when duckdb is installed (the dev extra); its link
count is checked against the engine's (``test_duckdb_baseline.py`` checks the links themselves). A run without
``--stream`` carries the streamed figures of the previous ``results.json`` beside ``--out``, marked as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import polars as pl
import psutil
import pyarrow

import optiq_engine as oq
from benchmarks.polars_baseline import attribute_polars

HERE = Path(__file__).resolve().parent
MODELS = list(oq.models.HEURISTIC_MODELS)


def duckdb_version() -> str | None:
    """The installed duckdb's version, or None (the DuckDB baseline is then left out of the run)."""
    try:
        import duckdb
    except ImportError:
        return None
    return str(duckdb.__version__)


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def write_section(path: Path, name: str, markdown: str) -> None:
    """Replace one script's section of RESULTS.md (between its markers), keeping the other scripts' ones."""
    start, end = f"<!-- section:{name} -->", f"<!-- /section:{name} -->"
    block = f"{start}\n{markdown.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else ""
    found = text.count(start), text.count(end)
    if found == (1, 1) and text.index(start) < text.index(end):
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) + 1 :]
    elif found == (0, 0):
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block
    else:  # a marker lost or repeated: appending would duplicate the section (it did, 2026-12-07)
        raise ValueError(f"{path}: section {name!r} has {found[0]} start and {found[1]} end markers; fix them by hand")
    path.write_text(text)


def peak_rss() -> int:
    """This process's resident-set high-water mark (VmHWM; unlike ru_maxrss it does not inherit the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise OSError("VmHWM not found in /proc/self/status")


def arrow_bytes(frame: pl.DataFrame) -> int:
    """Size of a frame in the standard Arrow layout (strings as offsets + bytes, categoricals as
    dictionaries). polars' ``estimated_size`` undercounts string-view columns, so it is not used."""
    return int(frame.to_arrow().nbytes)


def result_arrow_bytes(result: oq.AttributionResult) -> int:
    """Arrow size of a result; the columns that every model's chunk of the links shares count once."""
    links = result.links
    pairs = links.height // max(1, len(result.models))
    shared = links.slice(0, pairs).select("conversion_id", "touchpoint_id", "position", "touchpoint_count", "channel")
    own = links.select("model", "weight", "credited_value_micros")
    return arrow_bytes(shared) + arrow_bytes(own) + arrow_bytes(result.credit) + arrow_bytes(result.unattributed)


def time_call(fn, repeats: int) -> tuple[float, list[float], object]:
    fn()  # warm-up (compiled kernels are loaded from the cache here)
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def compile_times() -> dict[str, float]:
    """Seconds for a first tiny attribute() in a fresh process: cache off (compile) and on (load)."""
    code = (
        "import time, optiq_engine as oq; d = oq.synthetic.generate(n_users=200, seed=1); "
        "t = time.perf_counter(); oq.attribute(d.touchpoints, d.conversions); print(time.perf_counter() - t)"
    )
    out = {}
    for label, cache in (("compile (cache off)", "0"), ("cached load (cache on)", "1")):
        env = dict(os.environ, OPTIQ_NUMBA_CACHE=cache)
        if cache == "1":  # make sure the cache exists
            subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        res = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
        out[label] = float(res.stdout.strip().splitlines()[-1])
    return out


def engine_commit() -> str:
    """The commit of the engine under test, marked when its ``src/`` has uncommitted changes."""
    src = Path(oq.__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=src, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=src, capture_output=True, text=True)
    except OSError:
        return "unknown"
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    return head.stdout.strip() + (" with uncommitted changes in src/" if dirty.stdout.strip() else "")


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "numba threads": str(numba.get_num_threads()),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "python": platform.python_version(),
        "numba": numba.__version__,
        "polars": pl.__version__,
        "pyarrow": pyarrow.__version__,
        **({"duckdb": v} if (v := duckdb_version()) else {}),
        "os": platform.platform(),
        "engine commit": engine_commit(),
    }


def bench_size(n_touchpoints: int, repeats: int, baseline: bool) -> dict:
    users = max(1, n_touchpoints // 5)
    t0 = time.perf_counter()
    data = oq.synthetic.generate(n_users=users, seed=0)
    gen = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        # The generator writes rows sorted by user and time: shuffle them, and read them back from Parquet so
        # that the frames are laid out in memory as real inputs are (a shuffled gather would scatter strings).
        paths = {"tp": f"{tmp}/tp.parquet", "cv": f"{tmp}/cv.parquet"}
        data.touchpoints.sample(fraction=1.0, shuffle=True, seed=1).write_parquet(paths["tp"])
        data.conversions.sample(fraction=1.0, shuffle=True, seed=2).write_parquet(paths["cv"])
        del data
        tp, cv = pl.read_parquet(paths["tp"]), pl.read_parquet(paths["cv"])
        row = _time_size(tp, cv, repeats, baseline)
        row.update(users=users, generate_s=gen)
        del tp, cv
        which_all = ("engine", "duckdb", "polars") if duckdb_version() else ("engine", "polars")
        for which in which_all if baseline else ("engine",):
            res = subprocess.run(
                [sys.executable, "-m", "benchmarks.memory", which, paths["tp"], paths["cv"]],
                check=True,
                capture_output=True,
                text=True,
                cwd=HERE.parent,
            )
            row[f"{which}_memory"] = json.loads(res.stdout.strip().splitlines()[-1])
    return row


def _time_size(tp: pl.DataFrame, cv: pl.DataFrame, repeats: int, baseline: bool) -> dict:
    load_start = load_average()
    median, times, result = time_call(lambda: oq.attribute(tp, cv, models=MODELS), repeats)
    assert isinstance(result, oq.AttributionResult)
    row: dict = {"touchpoints": tp.height, "conversions": cv.height, "load_start": load_start}
    row.update(
        engine_s=median,
        engine_runs=times,
        stages=result.timings,
        links=result.links.height,
        pairs=result.links.height // len(MODELS),
        touchpoints_per_s=tp.height / median,
    )
    del result
    if baseline and duckdb_version():
        from benchmarks.duckdb_baseline import attribute_duckdb

        # the engine's own input frames (DuckDB reads them as Arrow), the same repeats as the engine
        d_median, d_times, d_links = time_call(lambda: attribute_duckdb(tp, cv, models=MODELS), repeats)
        assert d_links.height == row["links"], (d_links.height, row["links"])  # type: ignore[union-attr]
        row.update(duckdb_s=d_median, duckdb_runs=d_times, duckdb_links=d_links.height)  # type: ignore[union-attr]
        row["duckdb_ratio"] = d_median / median
        del d_links
    if baseline:
        tp_plain = tp.with_columns(pl.col("channel").cast(pl.String))
        b_median, b_times, b_links = time_call(lambda: attribute_polars(tp_plain, cv, models=MODELS), 1)
        row.update(polars_s=b_median, polars_runs=b_times, polars_links=b_links.height)  # type: ignore[union-attr]
        row["speedup"] = b_median / median
    row["load_end"] = load_average()
    return row


def bench_stream(n_touchpoints: int, batch_touchpoints: int) -> dict:
    """attribute() over user-partitioned batches of the generator's stream (data larger than one batch)."""
    users = max(1, n_touchpoints // 5)
    batch_users = max(1, batch_touchpoints // 5)
    gen = attr = 0.0
    totals = {"touchpoints": 0, "conversions": 0, "links": 0, "batches": 0}
    credits = []
    batches = oq.synthetic.iter_generate(n_users=users, batch_users=batch_users, seed=0)
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        gen += time.perf_counter() - t0
        if batch is None:
            break
        tp = batch.touchpoints.sample(fraction=1.0, shuffle=True, seed=1)
        t0 = time.perf_counter()
        result = oq.attribute(tp, batch.conversions, models=MODELS)
        attr += time.perf_counter() - t0
        totals["touchpoints"] += batch.touchpoints.height
        totals["conversions"] += batch.conversions.height
        totals["links"] += result.links.height
        totals["batches"] += 1
        credits.append(result.credit)
        del result, batch, tp
    oq.combine_credit(credits)  # the batch summaries add up
    peak = peak_rss()
    return {**totals, "generate_s": gen, "engine_s": attr, "peak_rss": peak}


_STAGES = {
    "validate": "coercion, null/range checks, id uniqueness",
    "encode": "channel codes, 64-bit group hashes",
    "sort": "parallel bucket sort of both tables",
    "match": "lookback windows",
    "weights": "the models' weights and the exact value split",
    "frames": "id gathers and the long links frame",
}


def _config_text() -> str:
    """The default configuration the benchmark runs with, read from AttributionConfig."""
    config = oq.AttributionConfig()
    reset = "reset after conversion" if config.reset_after_conversion else "no reset after conversion"
    return f"default config ({config.lookback.days}-day lookback, {reset})"


def _bounds(rows: list[dict], info: dict[str, str]) -> list[str]:
    """Where the time of the largest size went, from this run's stage timings (no fixed prose)."""
    if not rows:
        return []
    largest = max(rows, key=lambda r: r["touchpoints"])
    stages = largest["stages"]
    total = sum(stages.values()) or 1.0
    ranked = sorted(stages.items(), key=lambda kv: kv[1], reverse=True)
    return [
        f"## Where the time went ({largest['touchpoints']:,} touchpoints, {info.get('cores', '?')} cores)",
        "",
        "Share of the stages' sum in the last timed run, largest first:",
        "",
        *(f"- `{name}`: {seconds:.3f} s ({100 * seconds / total:.0f} %)" for name, seconds in ranked),
        "",
    ]


def render(rows: list[dict], compiled: dict[str, float], info: dict[str, str], stream: dict | None = None) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `benchmarks/run.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        + (
            ". Every baseline figure comes from the same run on the same data."
            if any("polars_s" in r for r in rows)
            else " (no Polars baseline in this run)."
        ),
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in info.items()),
        "",
        f"## attribute(): the {len(MODELS)} heuristic models, frames in -> link frames out",
        "",
        f"Synthetic data (`oq.synthetic.generate`, seed 0, rows shuffled and read back from Parquet), {_config_text()}. "
        "Median of the timed runs after one warm-up (*spread*: the fastest and slowest timed run), the engine warm "
        "(its compile time is below). The DuckDB baseline (`benchmarks/duckdb_baseline.py`: the same semantics in "
        "DuckDB SQL, 2 threads, on the engine's own input frames, links checked equal in "
        "`benchmarks/test_duckdb_baseline.py`) is timed like the engine; the Polars baseline "
        "(`benchmarks/polars_baseline.py`, the same semantics in plain Polars expressions) runs once. *x*: the "
        "baseline's time over the engine's, in this run. *load*: the machine's 1/5/15-minute load average at the "
        "start of the size's engine runs and after its baselines (the machine is shared).",
        "",
        "| touchpoints | conversions | links | engine s | spread s | touchpoints/s | DuckDB s | x | Polars s | x "
        "| load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        runs = r["engine_runs"]
        lines.append(
            f"| {r['touchpoints']:,} | {r['conversions']:,} | {r['links']:,} | {r['engine_s']:.3f} | "
            f"{min(runs):.3f}-{max(runs):.3f} | {r['touchpoints_per_s'] / 1e6:.1f}M | "
            + (f"{r['duckdb_s']:.2f} | {r['duckdb_ratio']:.1f}x | " if "duckdb_s" in r else "- | - | ")
            + (f"{r['polars_s']:.2f} | {r['speedup']:.1f}x | " if "polars_s" in r else "- | - | ")
            + (f"{r['load_start']} -> {r['load_end']} |" if "load_start" in r else "- |")
        )
    lines += [
        "",
        "### Peak memory",
        "",
        "A fresh process reads the (shuffled) inputs from Parquet, resets its high-water mark, and runs the "
        "call once (`benchmarks/memory.py`). *Peak* is the high-water resident set minus the process's size "
        "after imports: the loaded inputs, everything the call allocates, and its result. "
        "*Arrow in + out* is the size of the inputs plus the result in the standard Arrow layout (strings as "
        "offsets + bytes; the columns that the links' model chunks share counted once). *Above inputs*: the "
        "high-water mark minus the resident set with the inputs loaded, before the call.",
        "",
        "| touchpoints | implementation | peak | above inputs | Arrow in + out | peak / Arrow |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        for which in ("engine", "duckdb", "polars"):
            m = r.get(f"{which}_memory")
            if m:
                peak = m["peak"] - m["rss_start"]
                arrow = m["input_bytes"] + m["output_bytes"]
                above = f"{(m['peak'] - m['rss_loaded']) / 2**30:.2f} GiB" if "rss_loaded" in m else "-"
                lines.append(
                    f"| {r['touchpoints']:,} | {which} | {peak / 2**30:.2f} GiB | {above} | {arrow / 2**30:.2f} GiB | "
                    f"{peak / arrow:.2f} |"
                )
    lines += ["", "### Stages of the engine (seconds, last timed run)", ""]
    stages = list(rows[0]["stages"]) if rows else []
    lines.append("| touchpoints | " + " | ".join(stages) + " |")
    lines.append("|---:|" + "---:|" * len(stages))
    for r in rows:
        lines.append(f"| {r['touchpoints']:,} | " + " | ".join(f"{r['stages'][s]:.3f}" for s in stages) + " |")
    described = [f"`{name}` ({text})" for name, text in _STAGES.items() if name in stages]
    lines += ["", "Stages: " + ", ".join(described) + "." if described else "", ""]
    lines += [
        *(
            [
                "## Streamed: data larger than one batch",
                "",
                f"`oq.synthetic.iter_generate` in {stream['batches']} user-partitioned batches, `attribute()` on each "
                "(a user never spans two batches, so the links equal one big run's). Generation time excluded.",
                "",
                "| touchpoints | conversions | links | batches | engine s | touchpoints/s | peak process RSS |",
                "|---:|---:|---:|---:|---:|---:|---:|",
                f"| {stream['touchpoints']:,} | {stream['conversions']:,} | {stream['links']:,} | {stream['batches']} | "
                f"{stream['engine_s']:.2f} | {stream['touchpoints'] / stream['engine_s'] / 1e6:.1f}M | "
                f"{stream['peak_rss'] / 2**30:.2f} GiB |",
                "",
                "The peak includes the generator's own working memory for one batch."
                + (f" Not remeasured in this run: {stream['carried_over']}." if stream.get("carried_over") else ""),
                "",
            ]
            if stream
            else []
        ),
        "## Numba compile time (separate from run time)",
        "",
        "A first `attribute()` on 200 users in a fresh process:",
        "",
        *(f"- {k}: {v:.2f} s" for k, v in compiled.items()),
        "",
        *_bounds(rows, info),
        "Raw numbers: `results.json` beside this file.",
        "",
    ]
    return "\n".join(lines)


def _previous_stream(out: Path) -> dict | None:
    """The streamed figures recorded beside ``out`` by an earlier run (not remeasured), marked with its date."""
    previous = out.parent / "results.json"
    if not previous.exists():
        return None
    stream = json.loads(previous.read_text()).get("stream")
    if not stream:
        return None
    if not stream.get("carried_over"):
        written = re.search(
            r"Written by `benchmarks/run.py` on ([0-9-]+ [0-9:]+ UTC)", out.read_text() if out.exists() else ""
        )
        stream["carried_over"] = f"the figures of the run of {written.group(1) if written else 'an earlier date'}"
    return stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--stream", type=int, default=0, help="also stream this many touchpoints in batches")
    parser.add_argument("--batch", type=int, default=10_000_000, help="touchpoints per streamed batch")
    parser.add_argument(
        "--out", default=str(HERE.parent / "out" / "RESULTS.md"), help="the markdown to write (results.json beside it)"
    )
    parser.add_argument("--stream-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stream_child:
        print(json.dumps(bench_stream(args.stream_child, args.batch)))
        return
    info = machine()
    compiled = compile_times()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        row = bench_size(size, args.repeats, baseline=not args.no_baseline)
        print(json.dumps({k: v for k, v in row.items() if k != "stages"}, default=str), flush=True)
        rows.append(row)
    stream = None
    if not args.stream:
        stream = _previous_stream(Path(args.out))
    if args.stream:  # in a fresh process, so that its peak memory is its own
        res = subprocess.run(
            [sys.executable, "-m", "benchmarks.run", "--stream-child", str(args.stream), "--batch", str(args.batch)],
            check=True,
            capture_output=True,
            text=True,
            cwd=HERE.parent,
        )
        stream = json.loads(res.stdout.strip().splitlines()[-1])
        print(json.dumps(stream), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_section(Path(args.out), "attribute", render(rows, compiled, info, stream))
    (Path(args.out).parent / "results.json").write_text(
        json.dumps({"machine": info, "compile": compiled, "rows": rows, "stream": stream}, indent=2, default=str)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
