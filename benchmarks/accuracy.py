"""Accuracy of every attribution model against the simulator's ground truth; writes RESULTS.md "accuracy".

Usage: ``python -m benchmarks.accuracy [--users 100000] [--seeds 0,1,2] [--scenarios default,additive|none]
[--worlds all|none|touch_stock,end_order] [--world-seed 0] [--bootstrap 50] [--no-order2] [--out benchmarks/RESULTS.md]``.

For every scenario of ``synthetic.SCENARIOS`` (docs/synthetic.md §9) and every seed, the simulator's data
go through ``oq.attribute`` with the six heuristic models, MARKOV, SHAPLEY and DATA_DRIVEN (one call), and
MARKOV order 2 (a second call: a model name may appear once per call). Each model's **channel shares** are

- heuristic models: their credited conversions per channel divided by the model's total;
- data-driven models: ``result.fitted[name].channel_credit["share"]``,

(both as given by ``result.shares()``)
and its **score** is the total variation distance to the truth, ``½ Σ_c |share_c - true_share_c|``
(0 = perfect, 1 = disjoint), over the union of the channels (a channel missing on one side counts as 0).

**Coverage**: on one seed, the data-driven models run again with ``bootstrap=B`` Poisson replicates; a
channel is covered when its true share lies in the 95 % interval ``[ci_low, ci_high]``. Channels absent from
the data (no touches, so no interval) are not counted.

**Worlds** (``--worlds``): the same scoring on every mechanism of the independent simulator
``optiq_engine.simulate.worlds`` (docs/worlds.md), whose truth is each channel's summed per-user Shapley value
of ``P(convert | exposures restricted to S)``. Models: the six heuristic models, MARKOV, MARKOV order 2,
SHAPLEY, DATA_DRIVEN and ``DataDriven(form="journey")`` (label ``DATA_DRIVEN_JOURNEY``), one seed, shares from
``result.shares()``; coverage of the five data-driven models with ``bootstrap=B``. Its results are the
``worlds`` key of the JSON and the nested ``accuracy-worlds`` block of the RESULTS.md section.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import optiq_engine as oq
from benchmarks.run import machine, write_section
from optiq_engine.simulate import synthetic, worlds

HERE = Path(__file__).resolve().parent
HEURISTIC = list(oq.models.HEURISTIC_MODELS)
DATA_DRIVEN = ["MARKOV", "SHAPLEY", "DATA_DRIVEN"]
MARKOV_O2 = "MARKOV_O2"  # label of MARKOV(order=2), run in its own attribute() call
JOURNEY = "DATA_DRIVEN_JOURNEY"  # label of DataDriven(form="journey"), run in its own attribute() call
Shares = dict[str, float]


def model_shares(result: oq.AttributionResult) -> dict[str, Shares]:
    """Channel shares of every model of one ``attribute()`` result, from ``result.shares()`` (each sums to 1).

    Heuristic models: credited conversions per channel over the model's total; data-driven models: the
    fitted ``channel_credit.share``. A model whose shares sum to 0 (it credited nothing) is left out.
    """
    out: dict[str, Shares] = {}
    for (name,), rows in result.shares().group_by("model", maintain_order=True):
        shares = {str(c): float(v) for c, v in zip(rows["channel"], rows["share"], strict=True)}
        if sum(shares.values()) > 0:
            out[str(name)] = shares
    return out


def _data_driven(dd_form: str | None, **options: Any) -> list:
    """MARKOV, SHAPLEY and DATA_DRIVEN: by name (engine defaults) when ``dd_form`` is None, else as model objects
    with DATA_DRIVEN of that ``form`` (its label stays DATA_DRIVEN)."""
    if dd_form is None and not options:
        return list(DATA_DRIVEN)
    extra = {} if dd_form is None else {"form": dd_form}
    return [oq.models.Markov(**options), oq.models.Shapley(**options), oq.models.DataDriven(**extra, **options)]


def truth_shares(data: synthetic.SyntheticData | worlds.World) -> Shares:
    """The simulator's ``true_share`` per channel (docs/synthetic.md §4, docs/worlds.md §3; signed in worlds)."""
    return {str(c): float(s) for c, s in zip(data.truth["channel"], data.truth["true_share"], strict=True)}


def channel_errors(shares: Shares, truth: Shares) -> Shares:
    """Signed error ``share - true_share`` per channel, over the union of both sides' channels."""
    return {c: shares.get(c, 0.0) - truth.get(c, 0.0) for c in sorted(set(shares) | set(truth))}


def tv_distance(shares: Shares, truth: Shares) -> float:
    """Total variation distance ``½ Σ_c |share_c - true_share_c|`` (0 = perfect, 1 = disjoint supports)."""
    return 0.5 * sum(abs(e) for e in channel_errors(shares, truth).values())


def score_data(
    data: synthetic.SyntheticData | worlds.World,
    *,
    order2: bool = True,
    journey: bool = False,
    dd_form: str | None = None,
) -> dict[str, Any]:
    """Run every model on one data set and score it against its truth.

    Returns
    -------
    dict
        ``scores`` (model -> TV distance), ``errors`` (model -> channel -> signed error), ``shares`` (model ->
        channel -> share), ``seconds`` (``attribute`` wall time, order-2 call separate) and, for the automatic
        form, ``dd_choice`` (DATA_DRIVEN's heaviest candidate and its weight).
    """
    truth = truth_shares(data)
    start = time.perf_counter()
    result = oq.attribute(data.touchpoints, data.conversions, models=HEURISTIC + _data_driven(dd_form))
    seconds = {"attribute": time.perf_counter() - start}
    shares = model_shares(result)
    fit = result.fitted.get("DATA_DRIVEN")
    chosen = {"mechanism": fit.mechanism, "weight": fit.mechanism_weight} if hasattr(fit, "mechanism") else None
    if order2:
        start = time.perf_counter()
        second = oq.attribute(data.touchpoints, data.conversions, models=[oq.models.Markov(order=2)])
        seconds["markov_o2"] = time.perf_counter() - start
        shares[MARKOV_O2] = model_shares(second)["MARKOV"]
    if journey:
        start = time.perf_counter()
        third = oq.attribute(data.touchpoints, data.conversions, models=[oq.models.DataDriven(form="journey")])
        seconds["journey"] = time.perf_counter() - start
        shares[JOURNEY] = model_shares(third)["DATA_DRIVEN"]
    return {
        "scores": {m: tv_distance(s, truth) for m, s in shares.items()},
        "errors": {m: channel_errors(s, truth) for m, s in shares.items()},
        "shares": shares,
        "seconds": seconds,
    } | ({"dd_choice": chosen} if chosen else {})


#: The lift tests given to DATA_DRIVEN in the calibrated runs (chosen before any was run): the intent-driven
#: channels of ``confounded``, two acquisition channels, and one of each.
LIFT_PAIRS = (("email", "paid_search"), ("google_ads", "meta_ads"), ("email", "google_ads"))
#: The mechanisms of the calibrated runs by default: the two whose exposure a latent variable drives, and two
#: without (where tests that agree with the truth should change little).
LIFT_MECHANISMS = ("confounded", "segments", "end_additive", "touch_stock")


def lift_test_data(world: worlds.World, pairs: Sequence[tuple[str, ...]] = LIFT_PAIRS) -> dict[str, Any]:
    """DATA_DRIVEN (engine defaults) given each pair of ``World.lift_test`` results (the expected result of a
    10 % holdout, with its standard error): per pair, ``score``, ``errors``, ``seconds``, ``max_abs_z``."""
    truth = truth_shares(world)
    out: dict[str, Any] = {}
    for pair in pairs:
        tests = [world.lift_test(c) for c in pair]
        start = time.perf_counter()
        result = oq.attribute(world.touchpoints, world.conversions, models=[oq.models.DataDriven(experiments=tests)])
        shares = model_shares(result)["DATA_DRIVEN"]
        checks = result.fitted["DATA_DRIVEN"].experiment_checks
        out[", ".join(pair)] = {
            "score": tv_distance(shares, truth),
            "errors": channel_errors(shares, truth),
            "seconds": time.perf_counter() - start,
            "max_abs_z": float(checks["z"].abs().max()) if checks is not None else None,
            "std_errors": [t.std_error for t in tests],
        }
    return out


def coverage_data(
    data: synthetic.SyntheticData | worlds.World,
    *,
    bootstrap: int,
    order2: bool = True,
    seed: int = 0,
    journey: bool = False,
    dd_form: str | None = None,
) -> dict:
    """Bootstrap intervals of the data-driven models on one data set, and which contain the true share.

    Returns
    -------
    dict
        model -> ``covered`` / ``channels`` counts, ``mean_width`` of the intervals, ``seconds`` of the
        call(s), and ``per_channel``: channel -> ``[ci_low, ci_high, true_share, covered]``.
    """
    truth = truth_shares(data)
    present = {str(c) for c, n in zip(data.truth["channel"], data.truth["touches"], strict=True) if n > 0}
    start = time.perf_counter()
    if dd_form is None:
        result = oq.attribute(data.touchpoints, data.conversions, models=DATA_DRIVEN, bootstrap=bootstrap, seed=seed)
    else:
        models = _data_driven(dd_form, bootstrap=bootstrap, seed=seed)
        result = oq.attribute(data.touchpoints, data.conversions, models=models)
    seconds = time.perf_counter() - start  # one call fits all three
    fitted = {name: (fit, seconds) for name, fit in result.fitted.items()}
    if order2:
        start = time.perf_counter()
        model = oq.models.Markov(order=2, bootstrap=bootstrap, seed=seed)
        second = oq.attribute(data.touchpoints, data.conversions, models=[model])
        fitted[MARKOV_O2] = (second.fitted["MARKOV"], time.perf_counter() - start)
    if journey:
        start = time.perf_counter()
        model = oq.models.DataDriven(form="journey", bootstrap=bootstrap, seed=seed)
        third = oq.attribute(data.touchpoints, data.conversions, models=[model])
        fitted[JOURNEY] = (third.fitted["DATA_DRIVEN"], time.perf_counter() - start)
    out: dict[str, Any] = {}
    for name, (fit, seconds) in fitted.items():
        cc = fit.channel_credit
        per_channel = {}
        for c, low, high in zip(cc["channel"], cc["ci_low"], cc["ci_high"], strict=True):
            if str(c) not in present:  # listed by the channel enum, but never touched: no interval to check
                continue
            true = truth.get(str(c), 0.0)
            per_channel[str(c)] = [float(low), float(high), true, bool(low <= true <= high)]
        out[name] = {
            "covered": sum(v[3] for v in per_channel.values()),
            "channels": len(per_channel),
            "mean_width": statistics.fmean(v[1] - v[0] for v in per_channel.values()),
            "seconds": seconds,
            "per_channel": per_channel,
        }
    return out


def evaluate(
    *,
    n_users: int,
    seeds: Sequence[int],
    scenarios: Iterable[str] | None = None,
    order2: bool = True,
    bootstrap: int = 50,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Score every model on every scenario and seed; bootstrap coverage on the first seed.

    Parameters
    ----------
    n_users
        Users simulated per data set (``synthetic.generate(n_users=...)``).
    seeds
        Simulator seeds; scores are averaged over them.
    scenarios
        Scenario names (default: all of ``synthetic.SCENARIOS``).
    order2
        Also run MARKOV order 2 (label ``MARKOV_O2``).
    bootstrap
        Replicates for the coverage check (0: skip it).

    Returns
    -------
    dict
        ``runs`` (one record per scenario and seed, see :func:`score_data`), ``coverage`` (scenario ->
        :func:`coverage_data`), ``mean_scores`` (scenario -> model -> mean score), ``seconds`` (total).
    """
    start = time.perf_counter()
    names = list(scenarios) if scenarios is not None else list(synthetic.SCENARIOS)
    runs, coverage = [], {}
    for scenario in names:
        for i, seed in enumerate(seeds):
            t0 = time.perf_counter()
            data = synthetic.generate(n_users=n_users, seed=seed, scenario=scenario)
            generate_s = time.perf_counter() - t0
            record = {"scenario": scenario, "seed": seed, "generate_s": generate_s} | score_data(data, order2=order2)
            record["truth"] = truth_shares(data)
            runs.append(record)
            best = min(record["scores"], key=record["scores"].get)
            log(f"{scenario:<16} seed {seed}: best {best} {record['scores'][best]:.3f}  {record['seconds']}")
            if i == 0 and bootstrap:
                coverage[scenario] = coverage_data(data, bootstrap=bootstrap, order2=order2, seed=seed)
                log(
                    f"{scenario:<16} coverage: "
                    + ", ".join(f"{m} {v['covered']}/{v['channels']}" for m, v in coverage[scenario].items())
                )
            del data
    return {
        "users": n_users,
        "seeds": list(seeds),
        "bootstrap": bootstrap,
        "scenarios": {name: synthetic.SCENARIOS[name] for name in names},
        "runs": runs,
        "coverage": coverage,
        "mean_scores": mean_scores(runs),
        "mean_errors": mean_errors(runs),
        "seconds": time.perf_counter() - start,
    }


def evaluate_worlds(
    *,
    n_users: int,
    mechanisms: Iterable[str] | None = None,
    seed: int = 0,
    order2: bool = True,
    bootstrap: int = 50,
    dd_form: str | None = "touch",
    lift_mechanisms: Iterable[str] = (),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Score every model on every mechanism of ``simulate.worlds`` (one seed), with bootstrap coverage.

    Parameters
    ----------
    n_users
        Users per world (``worlds.generate(n_users=...)``).
    mechanisms
        Mechanism names (default: all of ``worlds.MECHANISMS``).
    seed
        The worlds' seed (also the bootstrap seed).
    order2
        Also run MARKOV order 2 (label ``MARKOV_O2``).
    bootstrap
        Replicates for the coverage check (0: skip it).
    dd_form
        ``form`` of the model labelled DATA_DRIVEN (None: the engine's default form).
    lift_mechanisms
        Mechanisms whose record also gets ``lift_tests`` (:func:`lift_test_data`).

    Returns
    -------
    dict
        ``runs``: mechanism -> :func:`score_data` record plus ``truth``, ``generate_s``, ``conversions``,
        ``expected_conversions``, ``touchpoints`` and ``coverage`` (:func:`coverage_data`, when
        ``bootstrap``); ``seconds`` (total).
    """
    start = time.perf_counter()
    names = list(mechanisms) if mechanisms is not None else list(worlds.MECHANISMS)
    runs: dict[str, Any] = {}
    for name in names:
        t0 = time.perf_counter()
        world = worlds.generate(name, n_users=n_users, seed=seed)
        record = {
            "generate_s": time.perf_counter() - t0,
            "touchpoints": world.touchpoints.height,
            "conversions": world.conversions.height,
            "expected_conversions": world.expected_conversions,
            "truth": truth_shares(world),
        } | score_data(world, order2=order2, journey=True, dd_form=dd_form)
        best = min(record["scores"], key=record["scores"].get)
        log(f"{name:<16} best {best} {record['scores'][best]:.3f}  {record['seconds']}")
        if bootstrap:
            record["coverage"] = coverage_data(
                world, bootstrap=bootstrap, order2=order2, seed=seed, journey=True, dd_form=dd_form
            )
            log(
                f"{name:<16} coverage: "
                + ", ".join(f"{m} {v['covered']}/{v['channels']}" for m, v in record["coverage"].items())
            )
        if name in set(lift_mechanisms):
            record["lift_tests"] = lift_test_data(world)
            log(
                f"{name:<16} lift tests: " + ", ".join(f"{k} {v['score']:.3f}" for k, v in record["lift_tests"].items())
            )
        runs[name] = record
        del world
    return {
        "users": n_users,
        "seed": seed,
        "bootstrap": bootstrap,
        "dd_form": dd_form,
        "mechanisms": {name: worlds.MECHANISMS[name] for name in names},
        "runs": runs,
        "seconds": time.perf_counter() - start,
    }


def render_worlds(report: dict[str, Any], analysis: str = "") -> str:
    """The markdown of the nested "accuracy-worlds" block of RESULTS.md."""
    runs = report["runs"]
    models = list(next(iter(runs.values()))["scores"])
    short = {"LAST_NON_DIRECT": "LAST_NON_DIR", "POSITION_BASED": "POSITION", JOURNEY: "DD_JOURNEY"}
    lines = [
        "### Independent worlds (`optiq_engine.simulate.worlds`, docs/worlds.md)",
        "",
        f"Written by `benchmarks/accuracy.py --worlds ...` on {report.get('written', '?')} (engine at commit "
        f"`{report.get('engine_commit', '?')}`), in {report['seconds']:.0f} s. `worlds.generate(mechanism, "
        f"n_users={report['users']:,}, seed={report['seed']})`: worlds written from the docs only, without "
        "reading the models; truth = each channel's summed per-user Shapley value of `P(convert | exposures "
        "restricted to S) - P(convert | none)`, computed exactly (signed: `negative` has a channel that lowers "
        "conversions). Default config, every model at its defaults except DATA_DRIVEN, which is "
        f"`DataDriven(form={report.get('dd_form')!r})` (None: the engine's default form); `DD_JOURNEY` is "
        '`DataDriven(form="journey")`. '
        "Score: half-L1 distance `½ Σ |share - true_share|` between `result.shares()` and the true shares "
        "(0 = perfect); **bold**: the best model of the mechanism.",
        "",
        "| mechanism | conv. | " + " | ".join(short.get(m, m) for m in models) + " |",
        "|---|---:|" + "---:|" * len(models),
    ]
    for name, run in runs.items():
        row = run["scores"]
        best = min(row.values())
        cells = [f"**{row[m]:.3f}**" if row[m] == best else f"{row[m]:.3f}" for m in models]
        lines.append(f"| {name} | {run['conversions']:,} | " + " | ".join(cells) + " |")
    overall = {m: statistics.fmean(run["scores"][m] for run in runs.values()) for m in models}
    best = min(overall.values())
    lines.append(
        "| *mean* | | " + " | ".join(f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in overall.values()) + " |"
    )
    choices = [
        f"`{name}` {run['dd_choice']['mechanism']} ({run['dd_choice']['weight']:.2f})"
        for name, run in runs.items()
        if "dd_choice" in run
    ]
    if choices:
        lines += ["", "DATA_DRIVEN's chosen candidate (its BIC weight): " + "; ".join(choices) + "."]
    covered = [run["coverage"] for run in runs.values() if "coverage" in run]
    if covered:
        cov_models = list(covered[0])
        lines += [
            "",
            f"Bootstrap coverage ({report['bootstrap']} Poisson replicates, 95 % intervals): channels whose true "
            "share lies in `[ci_low, ci_high]`, out of the channels touched; in brackets the mean interval width.",
            "",
            "| mechanism | " + " | ".join(short.get(m, m) for m in cov_models) + " |",
            "|---|" + "---:|" * len(cov_models),
        ]
        totals = {m: [0, 0] for m in cov_models}
        for name, run in runs.items():
            cells = []
            for m in cov_models:
                v = run["coverage"][m]
                totals[m][0] += v["covered"]
                totals[m][1] += v["channels"]
                cells.append(f"{v['covered']}/{v['channels']} ({v['mean_width']:.3f})")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append(
            "| *all* | " + " | ".join(f"{100 * c / n:.0f} %" for c, n in (totals[m] for m in cov_models)) + " |"
        )
    lines += [
        "",
        "Where the best data-driven models miss (signed error `share - true_share`, two largest each way):",
        "",
        "| mechanism | "
        + " | ".join(short.get(m, m) for m in ("DATA_DRIVEN", JOURNEY, "SHAPLEY") if m in models)
        + " |",
        "|---|" + "---|" * len([m for m in ("DATA_DRIVEN", JOURNEY, "SHAPLEY") if m in models]),
    ]
    for name, run in runs.items():
        lines.append(
            f"| {name} | "
            + " | ".join(_extremes(run["errors"][m]) for m in ("DATA_DRIVEN", JOURNEY, "SHAPLEY") if m in models)
            + " |"
        )
    lines += _lift_test_lines(runs)
    lines += [
        "",
        "Generation time per world (simulation + exact truth, warm Numba cache): "
        + ", ".join(f"{name} {run['generate_s']:.1f} s" for name, run in runs.items())
        + ".",
    ]
    lines += _other_seed_lines(report.get("other_seeds", {}), runs)
    commits = {run.get("engine_commit", report.get("engine_commit")) for run in runs.values()}
    if len(commits) > 1:
        by_commit: dict[str, list[str]] = {}
        for name, run in runs.items():
            by_commit.setdefault(run.get("engine_commit", report.get("engine_commit")), []).append(name)
        lines += [
            "",
            "Engine commits of the runs (`+dirty`: other helpers' uncommitted work in `src/`): "
            + "; ".join(f"`{c}`: {', '.join(names)}" for c, names in by_commit.items())
            + ".",
        ]
    if report.get("engine_changed_to"):
        lines += ["", engine_change_note(report)]
    lines += ["", analysis.strip(), "", "Raw numbers: the `worlds` key of `benchmarks/accuracy_results.json`.", ""]
    return "\n".join(lines)


def _lift_test_lines(runs: dict[str, Any]) -> list[str]:
    """The table of the calibrated runs (mechanisms with ``lift_tests``), or nothing."""
    tested = {name: run for name, run in runs.items() if "lift_tests" in run}
    if not tested:
        return []
    lines = [
        "",
        "**Calibrated by two lift tests** (`DataDriven(experiments=[world.lift_test(a), world.lift_test(b)])`: the "
        "exact expected result of a 10 % holdout of each channel over the whole period, with its standard error, "
        "docs/worlds.md §3.1; pairs fixed before any run). Half-L1 to the true shares; in brackets the two largest "
        "errors each way.",
        "",
        "| mechanism | no tests | best other model | tested | with the tests | largest errors with the tests |",
        "|---|---:|---|---|---:|---|",
    ]
    for name, run in tested.items():
        others = {m: v for m, v in run["scores"].items() if m != "DATA_DRIVEN"}
        best = min(others, key=others.get)
        label = {JOURNEY: "DD_JOURNEY"}.get(best, best)
        for pair, row in run["lift_tests"].items():
            lines.append(
                f"| {name} | {run['scores']['DATA_DRIVEN']:.3f} | {label} {others[best]:.3f} | {pair} | "
                f"{row['score']:.3f} | {_extremes(row['errors'])} |"
            )
    return lines


WORLDS_START, WORLDS_END = "<!-- section:accuracy-worlds -->", "<!-- /section:accuracy-worlds -->"


def worlds_block(path: Path) -> str:
    """The nested worlds block of the accuracy section (markers included), or "" if absent."""
    text = path.read_text() if path.exists() else ""
    if WORLDS_START not in text or WORLDS_END not in text:
        return ""
    return text[text.index(WORLDS_START) : text.index(WORLDS_END) + len(WORLDS_END)]


def write_worlds_block(path: Path, markdown: str) -> None:
    """Write the worlds block inside the accuracy section (before its end marker), replacing the previous one."""
    text = path.read_text() if path.exists() else ""
    block = f"{WORLDS_START}\n{markdown.strip()}\n{WORLDS_END}"
    old = worlds_block(path)
    if old:
        text = text.replace(old, block)
    elif "<!-- /section:accuracy -->" in text:
        text = text.replace("<!-- /section:accuracy -->", block + "\n<!-- /section:accuracy -->")
    else:
        text = text.rstrip() + "\n\n<!-- section:accuracy -->\n" + block + "\n<!-- /section:accuracy -->\n"
    path.write_text(text)


def mean_scores(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """scenario -> model -> score averaged over the scenario's runs (seeds)."""
    out: dict[str, dict[str, float]] = {}
    for scenario in dict.fromkeys(r["scenario"] for r in runs):
        at = [r for r in runs if r["scenario"] == scenario]
        out[scenario] = {m: statistics.fmean(r["scores"][m] for r in at) for m in at[0]["scores"]}
    return out


def mean_errors(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Shares]]:
    """scenario -> model -> channel -> signed error averaged over the scenario's runs."""
    out: dict[str, dict[str, Shares]] = {}
    for scenario in dict.fromkeys(r["scenario"] for r in runs):
        at = [r for r in runs if r["scenario"] == scenario]
        out[scenario] = {
            m: {c: statistics.fmean(r["errors"][m].get(c, 0.0) for r in at) for c in at[0]["errors"][m]}
            for m in at[0]["errors"]
        }
    return out


def _extremes(errors: Shares, k: int = 2) -> str:
    """The ``k`` most over- and under-credited channels, as ``display +0.12, ...``."""
    ranked = sorted(errors.items(), key=lambda kv: kv[1])
    over = [f"{c} {e:+.3f}" for c, e in reversed(ranked[-k:]) if e > 0.005]
    under = [f"{c} {e:+.3f}" for c, e in ranked[:k] if e < -0.005]
    return "over: " + (", ".join(over) or "-") + "; under: " + (", ".join(under) or "-")


def render(report: dict[str, Any], analysis: str = "") -> str:
    """The markdown of the "accuracy" section of RESULTS.md."""
    scores = report["mean_scores"]
    models = list(next(iter(scores.values())))
    short = {"LAST_NON_DIRECT": "LAST_NON_DIR", "POSITION_BASED": "POSITION", "DATA_DRIVEN": "DATA_DRIVEN"}
    lines = [
        "## Accuracy against the simulator's ground truth",
        "",
        f"Written by `benchmarks/accuracy.py` on {report.get('written', '?')} (engine at commit "
        f"`{report.get('engine_commit', '?')}`, same machine as above), in {report['seconds']:.0f} s. `oq.synthetic.generate(n_users={report['users']:,}, "
        f"seed=s, scenario=...)` for seeds {', '.join(map(str, report['seeds']))}; default config (30-day lookback, "
        "reset after conversion), every model at its defaults (`MARKOV_O2` is `Markov(order=2)`). Score: total "
        "variation distance between the model's channel shares and `truth.true_share`, "
        "`½ Σ |share - true_share|` (0 = perfect), mean over the seeds; **bold**: the best model of the scenario. "
        "Heuristic shares are credited conversions normalised per model; data-driven shares are "
        "`fitted[name].channel_credit.share`.",
        "",
        "| scenario | " + " | ".join(short.get(m, m) for m in models) + " |",
        "|---|" + "---:|" * len(models),
    ]
    for scenario, row in scores.items():
        best = min(row.values())
        cells = [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in row.values()]
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    overall = {m: statistics.fmean(row[m] for row in scores.values()) for m in models}
    best = min(overall.values())
    lines.append(
        "| *mean* | " + " | ".join(f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in overall.values()) + " |"
    )
    spread = max(
        statistics.pstdev(r["scores"][m] for r in report["runs"] if r["scenario"] == s) for s in scores for m in models
    )
    lines += ["", f"Largest standard deviation of a score over the seeds: {spread:.3f}.", ""]
    if report.get("engine_changed_to"):
        lines += [engine_change_note(report), ""]
    if report["coverage"]:
        cov_models = list(next(iter(report["coverage"].values())))
        lines += [
            f"### Bootstrap coverage (seed {report['seeds'][0]}, {report['bootstrap']} Poisson replicates, 95 % intervals)",
            "",
            "Channels whose true share lies in `[ci_low, ci_high]`, out of the channels touched in the data; in "
            "brackets the mean interval width. A zero-effect channel whose share is clipped to 0 in every replicate "
            "(SHAPLEY, DATA_DRIVEN: `max(φ, 0)`) has the interval [0, 0] and counts as covered.",
            "",
            "| scenario | " + " | ".join(cov_models) + " |",
            "|---|" + "---:|" * len(cov_models),
        ]
        totals = {m: [0, 0] for m in cov_models}
        for scenario, cov in report["coverage"].items():
            cells = []
            for m in cov_models:
                v = cov[m]
                totals[m][0] += v["covered"]
                totals[m][1] += v["channels"]
                cells.append(f"{v['covered']}/{v['channels']} ({v['mean_width']:.3f})")
            lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
        lines.append(
            "| *all* | " + " | ".join(f"{100 * c / n:.0f} %" for c, n in (totals[m] for m in cov_models)) + " |"
        )
        lines.append("")
    lines += [
        "### Where the data-driven models miss (mean signed error `share - true_share` over the seeds)",
        "",
        "| scenario | " + " | ".join(m for m in [*DATA_DRIVEN, MARKOV_O2] if m in models) + " |",
        "|---|" + "---|" * len([m for m in [*DATA_DRIVEN, MARKOV_O2] if m in models]),
    ]
    for scenario, errs in report["mean_errors"].items():
        lines.append(
            f"| {scenario} | " + " | ".join(_extremes(errs[m]) for m in [*DATA_DRIVEN, MARKOV_O2] if m in errs) + " |"
        )
    lines += ["", analysis.strip(), "", "Raw numbers (per seed, per channel): `benchmarks/accuracy_results.json`.", ""]
    return "\n".join(lines)


#: Written from the recorded run (100k users, seeds 0-2, engine e399d2d) after reading the per-channel errors.
ANALYSIS = """
**Where each data-driven model loses, and why.**

- **MARKOV (order 1 and 2) is no better than LINEAR** (mean 0.366 / 0.353 against 0.353) and loses on every
  scenario the same way: it over-credits `direct` (+0.17 to +0.19) and `display` (+0.11 to +0.27 in
  `reach_no_effect`), and under-credits `google_ads` (-0.15 to -0.19) and `email`. A removal effect counts the
  converting paths that pass through a channel: `direct` is a third of all touches and `display` reaches most
  users, so deleting either deletes many converting paths, whatever their effect. The truth keeps a removed
  channel's visit as a decision point (docs/synthetic.md §4); the chain sends it to NULL. Order 2 changes
  nothing material: the bias is in the removal definition, not in the memory of the chain. Its bootstrap
  intervals (0.002 wide) measure sampling noise around a biased value, so they cover the truth for 2-4 % of
  the channels.
- **SHAPLEY** (rate game, mean 0.263) over-credits the zero-effect `display` (+0.12 to +0.24) and, in
  `late_channel` and `additive`, `direct` (+0.07, +0.08); it under-credits `email` (-0.12 in those two) and
  `paid_search`. Its game is the conversion rate of journeys with exactly a set of channels: longer journeys
  have more touches, hence more chances to convert and more channels, so a channel that is simply frequent
  (`display`, `direct`) looks like it lifts the rate, while a late, effective channel (`email`) mostly
  appears in already large coalitions where the lift is shared with many partners. Its intervals are wider
  (0.03-0.05) and cover 30 %.
- **DATA_DRIVEN** (the default, `form="auto"`, engine `1333967`: the channels' presence alone among the
  candidate shapes since the run before at `b099a57`) is the best model in all 8 scenarios on the mean of the
  seeds (mean 0.092; 0.097 before), the other six within 0.001 of before. `saturation` 0.174 -> 0.147 and
  `interaction` 0.146 -> 0.136: both now choose "per-touch hazard, channel presence" (this simulator's
  repeats saturate at x0.2 in `saturation`, beyond the x0.4 of the strongest saturating candidate).
  `saturation` is still won by a hair: LAST_NON_DIRECT 0.149 on the mean, 0.150 against 0.153 at seed 0.
  What is left there is selection, not shape: with the presence shape the fit gives `email` 0.90 log-odds
  for its true 0.70 (seed 0; google_ads 0.79 for 0.80), and email is this scenario's frequent channel
  whose reach grows with the users' intent (docs/synthetic.md §2, step 4): +0.140 of share, which observational
  data cannot separate from its effect (a lift test can: docs/data_driven.md §6.1). It under-credits
  `direct` everywhere (share about 0 against about 0.04). Its intervals (0.008-0.013 wide) cover 47 % of
  the channels (46 % before): the rest is that bias.
"""


def engine_commit() -> str:
    """The ``HEAD`` commit of the engine under test (the checkout ``optiq_engine`` is imported from, which
    may be another worktree than this script's), with ``+dirty:<hash of the diff>`` when its ``src/`` has
    uncommitted changes."""
    src = Path(oq.__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=src, capture_output=True, text=True).stdout

    head = git("rev-parse", "--short", "HEAD")
    diff = git("diff", "HEAD", "--", ".")
    untracked = git("ls-files", "--others", "--exclude-standard", "--", ".")
    if not diff and not untracked:
        return head.strip()
    return head.strip() + "+dirty:" + hashlib.sha1((diff + untracked).encode()).hexdigest()[:8]


def changed_files(old: str, new: str) -> list[str]:
    """Files of ``src/`` that differ between two :func:`engine_commit` values (working-tree edits not included)."""
    done = subprocess.run(
        ["git", "diff", "--name-only", old.split("+")[0], new.split("+")[0], "--", "src"],
        cwd=HERE.parent,
        capture_output=True,
        text=True,
    )
    return done.stdout.split()


#: Source files whose change can move a figure of these benchmarks (the rest: service, Spark, I/O, display).
BENCHMARKED_CODE = ("models/", "kernels/", "paths/", "matching.py", "pipeline.py", "frames.py", "simulate/synthetic/")


def engine_change_note(report: dict[str, Any]) -> str:
    """A sentence saying that ``src/`` changed during the run, naming the changed files the benchmark runs."""
    files = report.get("engine_changed_files", [])
    ran = [f for f in files if any(part in f for part in BENCHMARKED_CODE)]
    return (
        f"**Note**: other work committed to `src/` during the run (`{report['engine_commit']}` -> "
        f"`{report['engine_changed_to']}`, {len(files)} files); of the code this benchmark runs: "
        + (", ".join(f"`{f}`" for f in ran) if ran else "none")
        + "."
    )


def other_seeds_summary(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per seed of other worlds runs (``--world-seed``, the same users): each mechanism's scores, and the run's
    engine commit and DATA_DRIVEN's chosen candidate."""
    return {
        str(r["seed"]): {
            "engine_commit": r.get("engine_commit", "?"),
            "users": r["users"],
            "scores": {name: run["scores"] for name, run in r["runs"].items()},
            "choice": {name: run.get("dd_choice", {}).get("mechanism", "") for name, run in r["runs"].items()},
        }
        for r in reports
    }


def _other_seed_lines(other: dict[str, Any], runs: dict[str, Any]) -> list[str]:
    """The "other seeds" table: DATA_DRIVEN's score per mechanism at this run's seed and the others', with the
    best other model where DATA_DRIVEN is not the best."""
    if not other:
        return []
    seeds = sorted(other, key=int)
    commits = ", ".join(f"seed {s} `{other[s]['engine_commit']}`" for s in seeds)
    lines = [
        "",
        f"**Other seeds** (`--world-seed`, {next(iter(other.values()))['users']:,} users, without bootstrap; "
        f"{commits}): DATA_DRIVEN's half-L1 per seed; where another model is closer, it and its score.",
        "",
        "| mechanism | this run | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
        "|---|---:|" + "---:|" * (len(seeds) + 1),
    ]

    def cell(scores: dict[str, float]) -> str:
        dd = scores["DATA_DRIVEN"]
        rival, best = min(((m, v) for m, v in scores.items() if m != "DATA_DRIVEN"), key=lambda mv: mv[1])
        return f"{dd:.3f}" if dd <= best else f"{dd:.3f} ({rival} {best:.3f})"

    for name, run in runs.items():
        per_seed = [other[s]["scores"].get(name) for s in seeds]
        if any(v is None for v in per_seed):
            continue
        values = [run["scores"]["DATA_DRIVEN"]] + [v["DATA_DRIVEN"] for v in per_seed]
        lines.append(
            f"| {name} | {cell(run['scores'])} | "
            + " | ".join(cell(v) for v in per_seed)
            + f" | {statistics.fmean(values):.3f} |"
        )
    return lines


def _stamp(report: dict[str, Any], commit: str) -> dict[str, Any]:
    """Add the machine, the engine commit (and whether it changed during the run) and the time to a report."""
    if engine_commit() != commit:  # src/ is shared with other work: say so rather than mix two engines silently
        report["engine_changed_to"] = engine_commit()
        report["engine_changed_files"] = changed_files(commit, report["engine_changed_to"])
        print(f"WARNING: the engine changed during the run ({commit} -> {report['engine_changed_to']})")
    return report | {
        "machine": machine(),
        "engine_commit": commit,
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _names(value: str, known: Iterable[str], what: str) -> list[str]:
    """``all`` / ``none`` / a comma-separated list of names of ``known`` (an unknown name is an error)."""
    known = list(known)
    if value == "all":
        return known
    if value in ("none", ""):
        return []
    names = value.split(",")
    bad = [n for n in names if n not in known]
    if bad:
        raise SystemExit(f"unknown {what} {bad}; choose from {known}, 'all' or 'none'")
    return names


def main(argv: list[str] | None = None) -> None:
    """Command line: run :func:`evaluate` and :func:`evaluate_worlds`, write the RESULTS.md section and the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--scenarios", default="all", help="synthetic scenarios: all, none or a comma list")
    parser.add_argument("--worlds", default="all", help="simulate.worlds mechanisms: all, none or a comma list")
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument(
        "--dd-form", default="default", help="form of DATA_DRIVEN in the worlds ('default': the engine's)"
    )
    parser.add_argument(
        "--lift-tests",
        default=",".join(LIFT_MECHANISMS),
        help="worlds mechanisms also run with two lift tests (LIFT_PAIRS): a comma list, all or none",
    )
    parser.add_argument("--bootstrap", type=int, default=50)
    parser.add_argument("--no-order2", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--json", type=Path, default=HERE / "accuracy_results.json")
    parser.add_argument("--from-json", action="store_true", help="only re-render the section from --json")
    parser.add_argument(
        "--other-seeds",
        default="",
        help="comma list of JSONs of worlds runs at other --world-seed: their scores are added to the worlds block",
    )
    args = parser.parse_args(argv)
    scenarios = _names(args.scenarios, synthetic.SCENARIOS, "scenarios")
    mechanisms = _names(args.worlds, worlds.MECHANISMS, "mechanisms")
    lift_mechanisms = _names(args.lift_tests, worlds.MECHANISMS, "mechanisms")
    previous = json.loads(args.json.read_text()) if args.json.exists() else {}
    if args.from_json:
        report = previous
    else:
        report = previous
        if scenarios:
            commit = engine_commit()
            report = evaluate(
                n_users=args.users,
                seeds=[int(s) for s in args.seeds.split(",")],
                scenarios=scenarios,
                order2=not args.no_order2,
                bootstrap=args.bootstrap,
            )
            report = _stamp(report, commit)
            if "worlds" in previous:
                report["worlds"] = previous["worlds"]
        if (
            mechanisms
        ):  # one mechanism at a time, the JSON and RESULTS.md rewritten after each (a cut run keeps its part)
            commit = engine_commit()
            merged: dict[str, Any] = {}
            before = report.get("worlds", {})
            dd_form = None if args.dd_form == "default" else args.dd_form
            same = {"users": args.users, "seed": args.world_seed, "bootstrap": args.bootstrap, "dd_form": dd_form}
            redo_all = set(before.get("runs", {})) <= set(mechanisms)  # a whole new run: its own time only
            if not redo_all and all(before.get(key) == value for key, value in same.items()):  # add to that run
                merged = {key: before[key] for key in ("users", "seed", "bootstrap", "dd_form", "seconds")}
                merged |= {"runs": dict(before["runs"]), "mechanisms": dict(before["mechanisms"])}
            for name in mechanisms:
                part = evaluate_worlds(
                    n_users=args.users,
                    mechanisms=[name],
                    seed=args.world_seed,
                    order2=not args.no_order2,
                    bootstrap=args.bootstrap,
                    dd_form=dd_form,
                    lift_mechanisms=lift_mechanisms,
                )
                part["runs"][name]["engine_commit"] = engine_commit()
                if merged:
                    merged["runs"] |= part["runs"]
                    merged["mechanisms"] |= part["mechanisms"]
                    merged["seconds"] += part["seconds"]
                else:
                    merged = part
                report["worlds"] = _stamp(dict(merged), commit)
                args.json.write_text(json.dumps(report, indent=1))
                write_worlds_block(args.out, render_worlds(report["worlds"], WORLDS_ANALYSIS))
        args.json.write_text(json.dumps(report, indent=1))
    if scenarios:  # with --from-json too: --scenarios none / --worlds none re-render only the other part
        block = worlds_block(args.out)  # the nested worlds block survives a rewrite of the scenarios' section
        markdown = render(report, ANALYSIS)
        print(markdown)
        write_section(args.out, "accuracy", markdown + ("\n\n" + block if block else ""))
    if args.other_seeds and "worlds" in report:
        others = [json.loads(Path(p).read_text())["worlds"] for p in args.other_seeds.split(",")]
        report["worlds"]["other_seeds"] = other_seeds_summary(others)
        args.json.write_text(json.dumps(report, indent=1))
    if "worlds" in report and mechanisms:
        markdown = render_worlds(report["worlds"], WORLDS_ANALYSIS)
        print(markdown)
        write_worlds_block(args.out, markdown)
    print(f"wrote {args.out} and {args.json}")


#: Written from the recorded worlds run (100k users, seed 0, B = 50, engine d2103c8, 2026-12-07) after reading
#: the per-channel errors.
WORLDS_ANALYSIS = """
**What the worlds show** (this run: `DATA_DRIVEN` is the engine's default, `form="auto"`, fitted on each
user's first journey with `fit_on="auto"`, whole or windowed, on timed paths; docs/data_driven.md §1-§2,
§5-§6).

- **The default is the closest on average and the best model in 11 of the 14 worlds** (one of them,
  `negative`, tied with `DD_JOURNEY`; it loses `threshold`, `end_order` and `confounded`): mean 0.099
  (0.098 at `4b6ccc3`, 0.143 before timed paths), `DD_JOURNEY` 0.174, `LAST_NON_DIRECT` 0.314, SHAPLEY
  0.414, MARKOV 0.485. Within 0.05 of the truth in 8 worlds (`end_additive` 0.040, `end_interaction` 0.033,
  `end_saturation` 0.023, `end_order` 0.035, `end_decay` 0.031, `touch_decay` 0.039, `one_channel` 0.019,
  `recency` 0.032); `touch_stock` 0.051, `mixed` 0.058, `segments` 0.087.
- **One seed is not enough: the table "Other seeds".** Seeds 1 and 2 of the same worlds showed, before
  this run's changes, `touch_decay` at 0.131 and 0.100 (the nested form chosen; 0.039 at seed 0) and
  `mixed` at 0.092 (seed 1). Over the three seeds (no bootstrap, same code as this run) the mean is 0.098
  (0.105 before) and every listed journey-end, decay and per-touch world is within 0.05 at every seed
  except `mixed` (0.058, 0.053, 0.033) and `touch_stock` at seed 0 (0.051); `end_order` and
  `end_interaction` lose to `DD_JOURNEY` at some seeds by 0.01-0.02, within the seeds' spread.
- **Since this run's code (engine `1333967`; the four calibrated worlds again at `55e81b0`)**: the channels'
  presence alone among the candidate shapes (no world here chooses it: every score and interval as at
  `4b6ccc3`, seeds 1 and 2 too); a tested channel's effects clipped at 0 in the calibration (below).
- **What changed in the run before** (docs/data_driven.md §6.1): **the funnel stage in the ending**
  (channels that come early or late in journeys make whether a journey ends depend on the mix seen so far;
  the nested form's end decision took that misfit as channel effects): `touch_decay` 0.131 / 0.100 ->
  0.049 / 0.035 at seeds 1 / 2, three-seed mean 0.090 -> 0.041, the touch form chosen at every seed;
  `mixed` 0.060 -> 0.048 (seed 0 0.045 -> 0.058); **channels' own half-lives** (`touch_decay` finds
  meta_ads 8.5 and video 12 days for their true 7 and 14, `recency` google_ads and email at a third of the
  shared one): `end_decay` 0.041 -> 0.036 and `recency` 0.038 -> 0.033 over the seeds. Tried and not kept:
  `a or b` terms without the `a last` ones (`mixed` seed 1 0.092 -> 0.168 with the journey form).
- **Where it still loses.** `threshold` 0.136 (`DD_JOURNEY` 0.060): the step (+1.8 once five channels total
  three touches) is read into `direct`, the late and frequent channel; no pair or position term passes its
  test there. `end_order` against `DD_JOURNEY` by the draws' noise (the fit's own shares 0.030 from the
  truth). `segments` 0.087 and `mixed` 0.058: `display` (no effect, an early channel) takes 0.04 in
  `mixed` through the nested form.
- **Selection by intent defeats every model without experiments** (`confounded`: 0.51;
  `LAST_NON_DIRECT` 0.313 is best): intent raises both the baseline and the exposure to direct, brand
  search, email and retargeting, and observational data cannot separate it from their effect. **Two lift
  tests fix most of it, not always enough** (table "Calibrated by two lift tests", docs/data_driven.md §6.1):
  0.113 with tests of email and brand search, 0.205 with email and google_ads, each the best of all models,
  but 0.324 with google_ads and meta_ads (LAST_NON_DIRECT 0.313). Measured on 2026-12-08: the exposure factor
  is the intent axis here (direct, paid_search, email, paid_social against the rest), and the two tests
  (observational holdout effects 538 and 222 against 1129 ± 299 and 778 ± 303) give the factor's effect a
  slab posterior of -0.40 ± 0.32, but the spike-and-slab prior (no shared confounder with probability 1/2)
  keeps the slab at posterior probability 0.41, so the point estimate is -0.165 and email and brand search
  keep most of their inflation (+0.149, +0.100). Without the spike (measured at `55e81b0`, effects clipped)
  the three pairs are 0.082, 0.127 and 0.084, all within the issue's 0.25; but tests that agree with the
  data then move `end_additive` (no intent) from 0.033 to 0.098 with google_ads and meta_ads and from 0.042
  to 0.091 with email and google_ads: a noise-sized factor effect (-0.07 ± 0.32) spread to `direct`, the
  most frequent channel, which the clip does not bound (an untested channel's effect may grow). `segments`
  0.055-0.087 and `touch_stock` 0.048-0.060 without it, as with it. Two tests cannot tell these worlds
  apart; the spike stays (a test that confirms the data should not make the answer worse). A calibrated fit
  has no candidates with terms.
- **Calibrations that no longer extrapolate** (`55e81b0`: each of a tested channel's effects is clipped at 0,
  docs §6.1; before, one shift of all its parts could push one part negative): `segments` with tests of
  email and paid_search 0.251 -> 0.056 (`segments` has no intent; the email test's shortfall had been
  carried to `direct` as shared confounding), `touch_stock` 0.092 -> 0.055 with google_ads and meta_ads and
  0.062 -> 0.050 with email and google_ads (0.038 -> 0.045 with email and paid_search).
- **Tests that agree with the data change little**: `end_additive` 0.033-0.042 with tests (0.040 without),
  `segments` 0.056-0.085 (0.087), `touch_stock` 0.045-0.055 (0.051).
- **Ad fatigue reads as no effect** (`negative`: `display` true share -0.29): shares are non-negative.
- **Intervals**: DATA_DRIVEN's 95 % intervals cover 77 % of the true shares (79 % at `4b6ccc3`; MARKOV 2 %,
  SHAPLEY 40 %, `DD_JOURNEY` 58 %): 11-12 of 12 in 9 worlds, 9 in `mixed`, 10 in `one_channel`, 5-7 in
  `segments` and `threshold`, 2-3 in `confounded` and `negative`. They measure sampling noise and the choice
  among forms, not misspecification.
- **Worlds the engine's authors never saw**: section "Holdout worlds" below (`benchmarks/holdout_worlds.py`,
  a second simulator written by a helper from docs/worlds.md §3 and the frame contract only, 7
  mechanisms): the default is the best model in 6 of 7, mean 0.110 (0.123 before the presence shape;
  SHAPLEY 0.247).
"""


if __name__ == "__main__":
    main()
