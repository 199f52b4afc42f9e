"""Run the peer attribution libraries on one aggregated path table and record time, memory and shares.

The peers are benchmark-only dependencies (``pip install -e ".[peers]"``), never runtime ones:

=========================  ===============================  ==========================================
variant                    call (the peer's defaults)        input it gets
=========================  ===============================  ==========================================
``ca:markov_o1``/``_o2``   ``ChannelAttribution.markov_     the path table as pandas (its own format)
                           model(order=1/2, seed=0)``
``ca:heuristic``           ``heuristic_models`` (linear)    the path table as pandas
``mta:markov``             ``MTA(...).markov()``            the path table as pandas (its own format)
``mta:shao``/``shapley``   ``MTA(...).shao()/.shapley()``   idem
``mam:markov``/``shapley`` ``mam.MAM(...).run_markov()``    grouped journeys: one row per (path,
                           ``/.run_shapley()`` (DP6 2.x)    converted) with ``occurrences``
``dp6:markov``/``shapley`` ``marketing_attribution_models.  per-journey rows: each path repeated
                           MAM.attribution_markov()/        ``total_conversions`` times with
                           attribution_shapley()`` (1.0.x)  ``conv=True`` and ``total_null`` times
                                                            with ``conv=False``
=========================  ===============================  ==========================================

Every run happens in a fresh Python process (``python -m benchmarks.peers worker ...``): the table is
read from Parquet, then the process's resident set is noted and its high-water mark (``VmHWM``) reset
(``/proc/self/clear_refs``), the input is converted to what the peer takes (``prepare_seconds``,
``prepare_peak_bytes``), the mark is reset again and the peer's call alone is timed (``seconds``) with its
high-water mark (``peak_memory_bytes``, relative to the resident set before conversion, so it includes the
converted input still held). Native code (ChannelAttribution's C++) is counted, unlike with tracemalloc.
A run that passes ``timeout`` seconds is killed (its process group) and recorded as ``"timeout"``; a
variant that cannot handle the table (too many channels for an exponential Shapley, a peer not
installed) is recorded as ``"skipped"`` with the reason, before anything runs.

``dp6:*`` (marketing-attribution-models 1.0.10, import name ``marketing_attribution_models``) cannot live
in the dev environment: PyPI's current release (2.x) is a rewrite importing as ``mam``, and 1.0.10 needs
``pandas<3`` (its Shapley writes through chained assignment, a silent no-op under pandas 3's
copy-on-write) and a shim for the ``seaborn-white`` matplotlib style it sets at import (renamed in
matplotlib 3.6). ``python -m benchmarks.peers setup-legacy`` makes a side environment for it under
``benchmarks/.cache/venv-dp6``; ``OPTIQ_PEERS_DP6_PYTHON`` may point at another interpreter.

Command line: ``python -m benchmarks.peers run [--sizes 10k,100k,1M] [--variants ca:*] [--seeds 10,20,30,40,50]
[--timeout 600] [--out benchmarks/.cache/peers_results.json]`` prints a table and writes every record.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import importlib.metadata
import importlib.util
import io
import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE_DIR = HERE / ".cache"
DP6_VENV = CACHE_DIR / "venv-dp6"
DEFAULT_TIMEOUT = 600.0
SPREAD_SEEDS = (10, 20, 30, 40, 50)  # ChannelAttribution's seeds must be nfold (10) apart to be independent
SEPARATOR = " > "
Status = Literal["ok", "skipped", "timeout", "error"]


@dataclass
class PeerRun:
    """One peer call on one path table.

    ``shares`` maps channel -> share of the credit (normalised to sum 1; empty unless ``status == "ok"``).
    ``removal_shares`` are the peer's removal effects normalised to sum 1, where it reports them
    (``mam:markov`` credits journeys with them instead, so its ``shares`` differ). ``raw`` is the peer's own
    output as JSON-able columns (``raw["removal_effect"]``: channel -> unnormalised removal effect). Times are wall-clock seconds; memory in bytes.
    """

    variant: str
    peer: str
    version: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    n_journeys: int = 0
    n_paths: int = 0
    n_channels: int = 0
    status: Status = "ok"
    reason: str = ""
    seconds: float | None = None
    prepare_seconds: float | None = None
    peak_memory_bytes: int | None = None
    prepare_peak_bytes: int | None = None
    rss_before_bytes: int | None = None
    wall_seconds: float | None = None
    shares: dict[str, float] = field(default_factory=dict)
    removal_shares: dict[str, float] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-able dict."""
        return asdict(self)


@dataclass(frozen=True)
class Variant:
    """A peer call: its distribution and import name, the runner, and the limits beyond which it is skipped."""

    name: str
    dist: str
    module: str
    prepare: Callable[[pl.DataFrame], Any]
    call: Callable[..., Credit]
    defaults: dict[str, Any] = field(default_factory=dict)
    max_channels: int | None = None
    max_journeys: int | None = None
    skip_reason: str = ""
    python_env: str | None = None  # environment variable naming another interpreter (dp6 legacy)


# --- input conversions ---------------------------------------------------------------------------------


def channels_of(paths: pl.DataFrame) -> list[str]:
    """The sorted distinct channels of a path table."""
    return sorted(paths["path"].str.split(SEPARATOR).explode().str.strip_chars().unique().to_list())


def grouped_journeys(paths: pl.DataFrame) -> pl.DataFrame:
    """One row per (path, converted) with its count ``occurrences`` (DP6 2.x ``grouped_journey`` format)."""
    converting = paths.filter(pl.col("total_conversions") > 0).select(
        journey="path", has_conversion=pl.lit(True), occurrences="total_conversions"
    )
    null = paths.filter(pl.col("total_null") > 0).select(
        journey="path", has_conversion=pl.lit(False), occurrences="total_null"
    )
    return pl.concat([converting, null])


def expand_journeys(paths: pl.DataFrame) -> pl.DataFrame:
    """One row per journey (``path``, ``conv``): each path repeated ``total_conversions`` times with
    ``conv=True`` and ``total_null`` times with ``conv=False``, in table order (converting rows first)."""
    grouped = grouped_journeys(paths)
    return grouped.select(
        path=pl.col("journey").repeat_by("occurrences"), conv=pl.col("has_conversion").repeat_by("occurrences")
    ).explode("path", "conv")


def _normalise(credit: dict[str, float]) -> dict[str, float]:
    total = sum(credit.values())
    if not total or not math.isfinite(total):
        raise ValueError(f"credit does not sum to a positive number: {credit}")
    return {channel: value / total for channel, value in sorted(credit.items())}


def _columns(frame: Any) -> dict[str, list[Any]]:
    """A pandas or polars frame as JSON-able columns."""
    if isinstance(frame, pl.DataFrame):
        return {name: frame[name].to_list() for name in frame.columns}
    frame = frame.reset_index()
    return {str(name): [_scalar(v) for v in frame[name].tolist()] for name in frame.columns}


def _scalar(value: Any) -> Any:
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


# --- runners: prepare (input conversion) and call, each importing its peer lazily ---------------------------

Credit = tuple[dict[str, float], dict[str, Any]]  # channel -> credit (any scale), raw output columns


def _credit(channels: Iterable[Any], values: Iterable[Any]) -> dict[str, float]:
    return {str(c): float(v) for c, v in zip(channels, values, strict=True)}


def _ca_frame(paths: pl.DataFrame) -> Any:
    return paths.select("path", "total_conversions", "total_null").to_pandas()


def _ca_markov(frame: Any, **params: Any) -> Credit:
    import ChannelAttribution as ca

    kwargs = {"var_path": "path", "var_conv": "total_conversions", "var_null": "total_null", "sep": ">"}
    result = ca.markov_model(frame, **(kwargs | {"verbose": False, "flg_pro": False} | params))
    main = result["result"] if isinstance(result, dict) else result
    raw = {"result": _columns(main)}
    if isinstance(result, dict):  # out_more=True: transition matrix and removal effects too
        raw |= {key: _columns(value) for key, value in result.items() if key not in ("result", "removal_effects")}
        effects = result["removal_effects"]
        raw["removal_effect"] = _credit(effects["channel_name"], effects["removal_effect"])
    return _credit(main["channel_name"], main["total_conversions"]), raw


def _ca_heuristic(frame: Any, **params: Any) -> Credit:
    import ChannelAttribution as ca

    result = ca.heuristic_models(frame, "path", "total_conversions", **({"sep": ">", "flg_pro": False} | params))
    return _credit(result["channel_name"], result["linear_touch"]), {"result": _columns(result)}


def _mta_model(paths: pl.DataFrame) -> Any:
    from mta import MTA

    # add_timepoints=False: its synthetic one-second exposure times only feed time decay; the default
    # allow_loops=False still runs (the paths have no repeats, so it only re-groups them)
    with contextlib.redirect_stdout(io.StringIO()):
        return MTA(data=_ca_frame(paths), add_timepoints=False)


def _mta(method: str) -> Callable[..., Credit]:
    def call(model: Any, **params: Any) -> Credit:
        with contextlib.redirect_stdout(io.StringIO()):
            getattr(model, method)(**({"normalize": False} | params))
        credit = dict(model.attribution[method])
        return _credit(credit, credit.values()), {"credit": {str(k): float(v) for k, v in credit.items()}}

    return call


def _mam_model(paths: pl.DataFrame) -> Any:
    from mam import MAM

    return MAM(
        grouped_journeys(paths),
        format_type="grouped_journey",
        channels_colname="journey",
        journey_with_conv_colname="has_conversion",
        occurrences_colname="occurrences",
    )


def _mam(method: str) -> Callable[..., Credit]:
    def call(model: Any, **params: Any) -> Credit:
        result = getattr(model, method)(**params)
        frame = result.to_polars()
        raw = {"result": _columns(frame)}
        if "removal_effect" in result.metadata:
            effects = result.metadata["removal_effect"]["removal_effect"]
            raw["removal_effect"] = _credit(effects.index, effects.to_numpy())
        return _credit(frame["channels"].cast(pl.String), frame["attribution"]), raw

    return call


def _dp6_import() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.style

    # 1.0.x calls plt.style.use("seaborn-white") at import; matplotlib >= 3.6 renamed the style
    matplotlib.style.library.setdefault("seaborn-white", matplotlib.style.library["seaborn-v0_8-white"])
    import marketing_attribution_models  # noqa: F401


def _dp6_model(paths: pl.DataFrame) -> Any:
    _dp6_import()
    from marketing_attribution_models import MAM

    with contextlib.redirect_stdout(io.StringIO()):
        return MAM(
            expand_journeys(paths).to_pandas(),
            channels_colname="path",
            journey_with_conv_colname="conv",
            group_channels=False,
            time_till_conv_colname="skip_column",  # only time decay needs it
        )


def _dp6(method: str) -> Callable[..., Credit]:
    def call(model: Any, **params: Any) -> Credit:
        result = getattr(model, method)(**params)
        frame = result[1]  # markov: a frame (channels, value); shapley: a Series indexed by channel
        credit = _credit(frame.index, frame.to_numpy()) if frame.ndim == 1 else _credit(*frame.iloc[:, :2].T.to_numpy())
        raw: dict[str, Any] = {"result": credit}
        if method == "attribution_markov":
            effects = result[3]["removal_effect"]
            raw["removal_effect"] = _credit(effects.index, effects.to_numpy())
        return credit, raw

    return call


_CA = {"dist": "ChannelAttribution", "module": "ChannelAttribution"}
_MTA = {"dist": "mta", "module": "mta"}
_MAM = {"dist": "marketing-attribution-models", "module": "mam"}
_DP6 = {
    "dist": "marketing-attribution-models",
    "module": "marketing_attribution_models",
    "python_env": "OPTIQ_PEERS_DP6_PYTHON",
}

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant("ca:markov_o1", **_CA, prepare=_ca_frame, call=_ca_markov, defaults={"order": 1, "seed": 0}),
        Variant("ca:markov_o2", **_CA, prepare=_ca_frame, call=_ca_markov, defaults={"order": 2, "seed": 0}),
        Variant("ca:heuristic", **_CA, prepare=_ca_frame, call=_ca_heuristic),
        Variant("mta:markov", **_MTA, prepare=_mta_model, call=_mta("markov")),
        Variant(
            "mta:markov_sim",
            **_MTA,
            prepare=_mta_model,
            call=_mta("markov"),
            defaults={"sim": True},
            skip_reason="simulates 1e6 paths per channel and one more, one np.random.choice per step in pure Python "
            "(hours at any size); run it explicitly with include_skipped=True",
        ),
        Variant("mta:shao", **_MTA, prepare=_mta_model, call=_mta("shao")),
        Variant("mta:shapley", **_MTA, prepare=_mta_model, call=_mta("shapley"), max_channels=15),
        Variant("mam:markov", **_MAM, prepare=_mam_model, call=_mam("run_markov")),
        Variant("mam:shapley", **_MAM, prepare=_mam_model, call=_mam("run_shapley")),
        Variant("dp6:markov", **_DP6, prepare=_dp6_model, call=_dp6("attribution_markov"), max_journeys=1_000_000),
        Variant("dp6:shapley", **_DP6, prepare=_dp6_model, call=_dp6("attribution_shapley"), max_journeys=1_000_000),
    ]
}
DEFAULT_VARIANTS = [name for name, v in VARIANTS.items() if not v.skip_reason]


# --- running ---------------------------------------------------------------------------------------------


def _python_for(variant: Variant) -> str:
    if variant.python_env is None:
        return sys.executable
    configured = os.environ.get(variant.python_env)
    if configured:
        return configured
    return str(DP6_VENV / "bin" / "python")


def _installed_version(variant: Variant, python: str) -> str | None:
    """The peer's installed version in ``python`` (None if it is not installed there)."""
    if python == sys.executable:
        if importlib.util.find_spec(variant.module) is None:
            return None
        return importlib.metadata.version(variant.dist)
    if not Path(python).exists():
        return None
    code = (
        "import importlib.metadata as m, importlib.util as u, sys; "
        f"print(m.version({variant.dist!r}) if u.find_spec({variant.module!r}) else '')"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() or None


def _skip_reason(variant: Variant, paths: pl.DataFrame, version: str | None, python: str) -> str:
    if version is None:
        where = "" if python == sys.executable else f" in {python}"
        return f"{variant.module} is not installed{where}"
    n_channels = len(channels_of(paths))
    if variant.max_channels is not None and n_channels > variant.max_channels:
        return f"{n_channels} channels > {variant.max_channels}: exact Shapley enumerates 2^n coalitions in Python"
    n_journeys = int(paths["total_conversions"].sum() + paths["total_null"].sum())
    if variant.max_journeys is not None and n_journeys > variant.max_journeys:
        return f"{n_journeys} journeys > {variant.max_journeys}: needs one pandas row (and Python list) per journey"
    return ""


def run_peer(
    paths: pl.DataFrame,
    variant: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    isolated: bool = True,
    include_skipped: bool = False,
    **params: Any,
) -> PeerRun:
    """Run one peer variant on a path table and return its record.

    Parameters
    ----------
    paths : pl.DataFrame
        Aggregated paths: ``path`` (channels joined by ``" > "``), ``total_conversions``, ``total_null``
        (and optionally ``total_conversion_value``).
    variant : str
        A key of :data:`VARIANTS` (e.g. ``"ca:markov_o1"``).
    timeout : float
        Seconds before the run is killed and recorded as ``"timeout"`` (isolated runs only).
    isolated : bool
        Run in a fresh process (memory measured, timeout enforced); False runs in this process (tests).
    include_skipped : bool
        Run a variant that is skipped by default (``mta:markov_sim``).
    **params
        Passed to the peer's call, over the variant's defaults (e.g. ``seed=3``).

    Returns
    -------
    PeerRun
        ``status`` is ``"ok"``, ``"skipped"`` (``reason`` says why), ``"timeout"`` or ``"error"``.
    """
    spec = VARIANTS[variant]
    params = spec.defaults | params
    python = _python_for(spec)
    version = _installed_version(spec, python)
    record = PeerRun(
        variant=variant,
        peer=spec.dist,
        version=version,
        params=params,
        n_journeys=int(paths["total_conversions"].sum() + paths["total_null"].sum()),
        n_paths=paths.height,
        n_channels=len(channels_of(paths)),
    )
    reason = "" if include_skipped and version else spec.skip_reason or _skip_reason(spec, paths, version, python)
    if reason:
        record.status, record.reason = "skipped", reason
        return record
    if not isolated:
        _fill(record, _measure(spec, paths, params, memory=False))
        return record
    with tempfile.TemporaryDirectory(prefix="optiq-peer-") as tmp:
        table, params_file, out = Path(tmp) / "paths.parquet", Path(tmp) / "params.json", Path(tmp) / "out.json"
        paths.write_parquet(table)
        params_file.write_text(json.dumps(params))
        command = [python, "-m", "benchmarks.peers", "worker", variant, str(table), str(params_file), str(out)]
        env = os.environ | {"PYTHONPATH": str(REPO)}
        start = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            record.status, record.reason = "timeout", f"killed after {timeout:g} s"
            record.wall_seconds = time.perf_counter() - start
            return record
        record.wall_seconds = time.perf_counter() - start
        if process.returncode != 0 or not out.exists():
            record.status = "error"
            record.reason = f"exit {process.returncode}: " + " | ".join(stderr.strip().splitlines()[-3:])
            return record
        _fill(record, json.loads(out.read_text()))
    return record


def _fill(record: PeerRun, result: dict[str, Any]) -> None:
    for key in ("seconds", "prepare_seconds", "peak_memory_bytes", "prepare_peak_bytes", "rss_before_bytes"):
        setattr(record, key, result[key])
    record.shares, record.raw = result["shares"], result["raw"]
    record.removal_shares = result.get("removal_shares", {})


def _measure(spec: Variant, paths: pl.DataFrame, params: dict[str, Any], *, memory: bool) -> dict[str, Any]:
    """Convert the input and call the peer, timing each; with ``memory``, high-water marks relative to the
    resident set before conversion (this process's: only meaningful in a fresh worker process)."""
    rss_before = _rss() if memory else None
    if memory:
        _reset_hwm()
    start = time.perf_counter()
    prepared = spec.prepare(paths)
    prepare_seconds = time.perf_counter() - start
    prepare_peak = _hwm() if memory else None
    if memory:
        _reset_hwm()
    start = time.perf_counter()
    credit, raw = spec.call(prepared, **params)
    seconds = time.perf_counter() - start
    peak = _hwm() if memory else None
    return {
        "seconds": seconds,
        "prepare_seconds": prepare_seconds,
        "rss_before_bytes": rss_before,
        "prepare_peak_bytes": None if prepare_peak is None or rss_before is None else prepare_peak - rss_before,
        "peak_memory_bytes": None if peak is None or rss_before is None else peak - rss_before,
        "shares": _normalise(credit),
        "removal_shares": _normalise(raw["removal_effect"]) if "removal_effect" in raw else {},
        "raw": raw,
    }


def _rss() -> int:
    return _status_kib("VmRSS") * 1024


def _hwm() -> int:
    return _status_kib("VmHWM") * 1024


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(f"{key} not found in /proc/self/status")


def _reset_hwm() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _worker(variant: str, table: str, params_file: str, out: str) -> None:
    """Body of the fresh process: import the peer, read the table, then measure conversion and call."""
    spec = VARIANTS[variant]
    if spec.module == "marketing_attribution_models":
        _dp6_import()
    else:
        importlib.import_module(spec.module)
    paths = pl.read_parquet(table)
    params = json.loads(Path(params_file).read_text())
    with contextlib.redirect_stdout(sys.stderr):
        result = _measure(spec, paths, params, memory=True)
    Path(out).write_text(json.dumps(result))


# --- spreads and comparisons -------------------------------------------------------------------------------


def share_spread(runs: Iterable[PeerRun]) -> pl.DataFrame:
    """Per-channel ``mean``, ``min``, ``max``, ``std`` (sample) and ``range`` of the shares of several runs."""
    ok = [run for run in runs if run.status == "ok"]
    if not ok:
        raise ValueError("no successful run to take a spread of")
    channels = sorted({channel for run in ok for channel in run.shares})
    rows = []
    for channel in channels:
        values = [run.shares.get(channel, 0.0) for run in ok]
        rows.append(
            {
                "channel": channel,
                "mean": statistics.fmean(values),
                "min": min(values),
                "max": max(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "range": max(values) - min(values),
                "n_runs": len(values),
            }
        )
    return pl.DataFrame(rows)


def channel_attribution_spread(
    paths: pl.DataFrame,
    seeds: Sequence[int] = SPREAD_SEEDS,
    order: int = 1,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    isolated: bool = True,
    **params: Any,
) -> pl.DataFrame:
    """ChannelAttribution's run-to-run spread: its ``markov_model`` shares over several seeds.

    Returns the frame of :func:`share_spread` (one row per channel: ``mean``, ``min``, ``max``, ``std``,
    ``range``, ``n_runs``). An exact removal-effect share agrees with ChannelAttribution "within its own
    spread" when it lies in ``[min, max]`` (or within a few ``std`` of ``mean``).

    Notes
    -----
    ChannelAttribution seeds fold ``r`` (of ``nfold=10``) with ``mt19937(seed + r)`` and returns the fold
    nearest the median, so seeds closer than ``nfold`` share folds and often return identical shares
    (seeds 0 and 1 share 9 of 10 streams). The default seeds are therefore ``nfold`` apart; closer ones warn.
    """
    nfold = int(params.get("nfold", 10))
    ordered = sorted(seeds)
    if any(b - a < nfold for a, b in itertools.pairwise(ordered)):
        warnings.warn(
            f"seeds {list(seeds)} are closer than nfold={nfold}: their runs share random streams and "
            "understate ChannelAttribution's spread; space them by nfold (e.g. 10, 20, 30, 40, 50)",
            stacklevel=2,
        )
    variant = f"ca:markov_o{order}"
    if variant not in VARIANTS:
        raise ValueError(f"order must be 1 or 2, got {order}")
    runs = [run_peer(paths, variant, timeout=timeout, isolated=isolated, seed=seed, **params) for seed in seeds]
    failed = [run for run in runs if run.status != "ok"]
    if failed:
        raise RuntimeError(f"ChannelAttribution failed: {failed[0].status}: {failed[0].reason}")
    return share_spread(runs)


def max_share_difference(shares: dict[str, float], reference: dict[str, float]) -> float:
    """Largest absolute difference of two share dicts over the union of their channels."""
    return max(abs(shares.get(c, 0.0) - reference.get(c, 0.0)) for c in set(shares) | set(reference))


# --- command line --------------------------------------------------------------------------------------------


def run_all(
    sizes: Sequence[str],
    *,
    variants: Sequence[str] = tuple(DEFAULT_VARIANTS),
    seeds: Sequence[int] = SPREAD_SEEDS,
    timeout: float = DEFAULT_TIMEOUT,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Every selected variant at every size, plus ChannelAttribution at each seed; JSON-able records."""
    from benchmarks.peer_paths import describe_paths, load_paths

    records: list[dict[str, Any]] = []
    for size in sizes:
        paths = load_paths(size)
        log(f"== {size}: {describe_paths(paths)}")
        jobs: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in variants]
        for order in (1, 2):
            if f"ca:markov_o{order}" in variants:
                jobs += [(f"ca:markov_o{order}", {"seed": seed}) for seed in seeds]
        for name, params in jobs:
            run = run_peer(paths, name, timeout=timeout, **params)
            records.append({"size": size} | run.to_dict())
            log(_line(size, run))
    return records


def _line(size: str, run: PeerRun) -> str:
    if run.status != "ok":
        return f"{size:>5} {run.variant:<16} {run.params!s:<24} {run.status}: {run.reason}"
    mib = (run.peak_memory_bytes or 0) / 2**20
    return (
        f"{size:>5} {run.variant:<16} {run.params!s:<24} {run.seconds:9.3f} s  prep {run.prepare_seconds:7.3f} s"
        f"  peak +{mib:8.1f} MiB  v{run.version}"
    )


def summary_table(records: Sequence[dict[str, Any]]) -> str:
    """Markdown: per size and variant, time, memory, and the share difference to ChannelAttribution order 1."""
    lines = [
        "| size | variant | params | seconds | prepare s | peak MiB | max abs share diff vs CA o1 seed 0 |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for size in dict.fromkeys(r["size"] for r in records):
        at_size = [r for r in records if r["size"] == size]
        reference = next(
            (r["shares"] for r in at_size if r["variant"] == "ca:markov_o1" and r["params"].get("seed") == 0), None
        )
        for r in at_size:
            if r["status"] != "ok":
                lines.append(f"| {size} | {r['variant']} | {r['params']} | {r['status']}: {r['reason']} | | | |")
                continue
            diff = f"{max_share_difference(r['shares'], reference):.4f}" if reference and r["shares"] else ""
            lines.append(
                f"| {size} | {r['variant']} | {r['params']} | {r['seconds']:.3f} | {r['prepare_seconds']:.3f} "
                f"| {r['peak_memory_bytes'] / 2**20:.1f} | {diff} |"
            )
    return "\n".join(lines)


def setup_legacy(venv: Path = DP6_VENV) -> Path:
    """Create a side environment with marketing-attribution-models 1.0.10 (``dp6:*``) and return its python."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    packages = ["marketing-attribution-models==1.0.10", "pandas<3", "polars", "pyarrow"]
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *packages], check=True)
    return python


def main(argv: list[str] | None = None) -> None:
    """``run`` (benchmark), ``setup-legacy`` (dp6 side environment) or ``worker`` (internal)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--sizes", default="10k,100k,1M")
    run.add_argument("--variants", default="*", help="comma-separated names or globs, e.g. 'ca:*,mam:markov'")
    run.add_argument("--seeds", default=",".join(map(str, SPREAD_SEEDS)))
    run.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    run.add_argument("--out", type=Path, default=CACHE_DIR / "peers_results.json")
    sub.add_parser("setup-legacy")
    worker = sub.add_parser("worker")
    worker.add_argument("args", nargs=4)
    args = parser.parse_args(argv)
    if args.command == "worker":
        _worker(*args.args)
    elif args.command == "setup-legacy":
        print(setup_legacy())
    else:
        patterns = args.variants.split(",")
        names = [name for name in DEFAULT_VARIANTS if any(fnmatch.fnmatch(name, p) for p in patterns)]
        seeds = [int(s) for s in args.seeds.split(",") if s]
        records = run_all(args.sizes.split(","), variants=names, seeds=seeds, timeout=args.timeout)
        previous = json.loads(args.out.read_text()) if args.out.exists() else []
        keep = [r for r in previous if (r["size"], r["variant"]) not in {(n["size"], n["variant"]) for n in records}]
        args.out.parent.mkdir(exist_ok=True)
        args.out.write_text(json.dumps(keep + records, indent=1))
        print(summary_table(records))


if __name__ == "__main__":
    main()
