"""Is ``form="auto"``'s choice biased? Conversions simulated from the engine's own fitted touch form.

Fits DATA_DRIVEN on a world, takes its best touch-form candidate (hazard with a half-life in days) and
simulates new conversions from it over touch streams of the world: one decision per touch, the first
success converts, a minute later. The true form is then ``"touch"``, and a nested form should gain
about half a χ² with (channels + 1) degrees of freedom over it. The script prints the gain that the
nested form actually shows and the form the engine chooses (docs/data_driven.md §6.1, "A bias of the
choice toward the nested form").

The streams are those of the users who never converted in the world (:func:`never_converted`); with
``--all-streams``, every user's, including streams that went on after a conversion of the world's own
(there the worlds' users stop at another rate, so the simulated non-converting journeys end by the world's
conversions: the gain that shows is mostly that); ``--model-ending`` also ends each stream by the touch
form's own ending. With ``--whole`` the journeys themselves are simulated
from the touch form, its ending included (first channels and transitions as observed, gaps resampled),
``--frailty`` and ``--spread`` adding users who end at different rates and channels whose effects fade at
different speeds.

    python -m benchmarks.form_choice_bias --users 30000 --mechanism touch_decay
"""

from __future__ import annotations

import argparse
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

import optiq_engine as oq
from optiq_engine.kernels import journey_model as jm
from optiq_engine.kernels.paths import GAP_DAYS
from optiq_engine.models.data_driven.form_choice import choose_candidates
from optiq_engine.models.data_driven.journey_model import JourneyModel
from optiq_engine.simulate import worlds


def simulate_from(model: JourneyModel, channels: tuple[str, ...], touchpoints: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Conversions drawn from ``model``'s hazard (touch part, half-life in days) over each user's touches."""
    b, beta = model.params[0], model.params[1 : 1 + len(channels)]
    code = {c: i for i, c in enumerate(channels)}
    rng = np.random.default_rng(seed)
    rows = []
    for (user,), touches in touchpoints.sort("occurred_at").group_by("anon_id", maintain_order=True):
        stock, prev = np.zeros(len(channels)), None
        for at, channel in touches.select("occurred_at", pl.col("channel").cast(pl.String)).iter_rows():
            if prev is not None:
                stock *= 2.0 ** (-(at - prev).total_seconds() / 86_400 / model.half_life)
            prev = at
            stock[code[channel]] += 1.0
            if rng.random() < 1.0 / (1.0 + math.exp(-(b + beta @ stock))):
                rows.append((f"sim_{len(rows)}", user, at + timedelta(minutes=1), 1_000_000))
                break
    schema = {"conversion_id": pl.String, "anon_id": pl.String, "occurred_at": pl.Datetime("us", "UTC")}
    return pl.DataFrame(rows, schema=schema | {"value_micros": pl.Int64}, orient="row")


def _ending(ends: np.ndarray, c_n: int, pos: int, c: int, prev: int) -> float:
    """The touch form's ending logit after a touch of ``c`` at ``pos``, ``prev`` the channel before (-1: none)."""
    return float(ends[jm.bucket(pos)] + ends[jm.N_BUCKETS + c] + (ends[jm.N_BUCKETS + c_n + prev] if prev >= 0 else 0))


def end_by_model(model: JourneyModel, channels: tuple[str, ...], touchpoints: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Each user's stream also ended by ``model``'s ending (after each touch, with its probability by position
    and the last two channels): the touchpoints kept."""
    c_n, code = len(channels), {c: i for i, c in enumerate(channels)}
    ends = model.params[2 + 2 * c_n :]
    rng = np.random.default_rng(seed)
    kept = []
    for _, touches in touchpoints.sort("occurred_at").group_by("anon_id", maintain_order=True):
        prev = -1
        for pos, (tid, channel) in enumerate(
            touches.select("touchpoint_id", pl.col("channel").cast(pl.String)).iter_rows(), start=1
        ):
            kept.append(tid)
            if rng.random() < 1.0 / (1.0 + math.exp(-_ending(ends, c_n, pos, code[channel], prev))):
                break
            prev = code[channel]
    return touchpoints.filter(pl.col("touchpoint_id").is_in(pl.Series(kept).implode()))


def simulate_whole(
    model: JourneyModel, table: oq.PathTable, n_users: int, seed: int, frailty: float = 0.0, spread: float = 0.0
) -> tuple[pl.DataFrame, ...]:
    """Touchpoints and conversions of ``n_users`` journeys drawn from ``model`` (touch part and ending):
    first channels and channel transitions as in ``table``, gaps resampled from its touches'."""
    c_n, p = len(table.channels), model.params
    b, beta = p[0], p[1 : 1 + c_n]
    ends = p[2 + 2 * c_n :]  # position buckets, the last channel's terms, the channel before's
    w = table.conversions + table.nulls
    first = np.bincount(table.codes[table.offsets[:-1]], weights=w, minlength=c_n)
    rows = np.repeat(np.arange(table.height), np.diff(table.offsets))
    later = np.ones(table.codes.shape[0], dtype=bool)
    later[table.offsets[:-1]] = False
    trans = np.ones((c_n, c_n))
    np.add.at(trans, (table.codes[np.flatnonzero(later) - 1], table.codes[later]), w[rows[later]])
    gaps = GAP_DAYS[table.gaps[later]]
    # the channels' own half-lives: the model's times 2^(-spread/2 .. spread/2), in channel order
    half_lives = model.half_life * np.exp2(spread * (np.arange(c_n) / max(c_n - 1, 1) - 0.5))
    rng = np.random.default_rng(seed)
    start, touches, conversions = datetime(2026, 1, 1, tzinfo=UTC), [], []
    for u in range(n_users):
        offset = frailty if rng.random() < 0.5 else -frailty  # the user's own ending logit offset
        stock, at, c, pos, prev = np.zeros(c_n), start, rng.choice(c_n, p=first / first.sum()), 1, -1
        while True:
            if pos > 1:
                gap = float(gaps[rng.integers(gaps.shape[0])])
                stock *= 2.0 ** (-gap / half_lives)
                at += timedelta(days=gap)
            stock[c] += 1.0
            touches.append((f"tp_{u}_{pos}", f"u_{u}", at, table.channels[c]))
            if rng.random() < 1.0 / (1.0 + math.exp(-(b + beta @ stock))):
                conversions.append((f"cv_{u}", f"u_{u}", at + timedelta(minutes=1), 1_000_000))
                break
            if rng.random() < 1.0 / (1.0 + math.exp(-(_ending(ends, c_n, pos, c, prev) + offset))):
                break
            prev, c, pos = c, rng.choice(c_n, p=trans[c] / trans[c].sum()), pos + 1
    at_schema = {"anon_id": pl.String, "occurred_at": pl.Datetime("us", "UTC")}
    return (
        pl.DataFrame(touches, schema={"touchpoint_id": pl.String} | at_schema | {"channel": pl.String}, orient="row"),
        pl.DataFrame(
            conversions, schema={"conversion_id": pl.String} | at_schema | {"value_micros": pl.Int64}, orient="row"
        ),
    )


def best(candidates: list[JourneyModel], form: str) -> JourneyModel:
    return min((c for c in candidates if c.form == form and math.isfinite(c.half_life)), key=lambda c: c.bic)


def never_converted(world: worlds.World) -> pl.DataFrame:
    """The touch streams of the users who never converted in ``world``: streams that end as the world's
    streams end, not after a conversion of the world's own (after which the worlds' users go on touching, and
    stop at another rate)."""
    return world.touchpoints.filter(~pl.col("anon_id").is_in(world.conversions.get_column("anon_id").implode()))


def nested_gain(touchpoints: pl.DataFrame, conversions: pl.DataFrame) -> tuple[float, oq.models.FittedModel]:
    """The nested form's log-likelihood gain over the touch form when DATA_DRIVEN is fitted on the data, and
    the fit."""
    again = oq.attribute(touchpoints, conversions, models=["DATA_DRIVEN"]).fitted["DATA_DRIVEN"]
    selection = again.form_selection
    ll = {f: selection.filter(pl.col("form") == f).get_column("log_likelihood").max() for f in ("touch", "both")}
    return ll["both"] - ll["touch"], again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=30_000)
    parser.add_argument("--mechanism", default="touch_decay")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--whole", action="store_true", help="simulate the journeys too, their ending included")
    parser.add_argument(
        "--frailty", type=float, default=0.0, help="with --whole: half the users end with logit +F, half with -F"
    )
    parser.add_argument(
        "--all-streams",
        action="store_true",
        help="every user's stream, also those that went on after a conversion of the world's own",
    )
    parser.add_argument(
        "--model-ending", action="store_true", help="the streams also ended by the touch form's own ending"
    )
    parser.add_argument(
        "--spread", type=float, default=0.0, help="with --whole: channels' half-lives the model's x 2^(±spread/2)"
    )
    args = parser.parse_args()
    world = worlds.generate(args.mechanism, n_users=args.users, seed=0)
    fitted = oq.attribute(world.touchpoints, world.conversions, models=["DATA_DRIVEN"]).fitted["DATA_DRIVEN"]
    table, model = fitted.paths, fitted.model
    candidates, _ = choose_candidates(table, l2=float(model.l2), seed=model.seed)
    touch = best(candidates, "touch")
    print(f"world {args.mechanism}: chosen {fitted.mechanism}; touch form's half-life {touch.half_life:.2f} days")
    if args.whole:
        touchpoints, conversions = simulate_whole(touch, table, args.users, args.seed, args.frailty, args.spread)
    else:
        touchpoints = world.touchpoints if args.all_streams else never_converted(world)
        if args.model_ending:
            touchpoints = end_by_model(touch, table.channels, touchpoints, args.seed + 1000)
        conversions = simulate_from(touch, table.channels, touchpoints, args.seed)
    gain, again = nested_gain(touchpoints, conversions)
    print(
        f"simulated from the touch form ({conversions.height:,} conversions): chosen {again.mechanism} "
        f"(weight {again.mechanism_weight:.3f}); nested form's gain {gain:.1f} "
        f"log-likelihood units for {len(table.channels) + 1} more parameters"
    )


if __name__ == "__main__":
    main()
