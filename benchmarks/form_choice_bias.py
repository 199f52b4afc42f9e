"""Is ``form="auto"``'s choice biased? Conversions simulated from the engine's own fitted touch form.

Fits DATA_DRIVEN on a world, takes its best touch-form candidate (hazard with a half-life in days) and
simulates new conversions from it over the world's own touch streams: one decision per touch, the first
success converts, a minute later. The true form is then ``"touch"``, and a nested form should gain
about half a χ² with (channels + 1) degrees of freedom over it. The script prints the gain that the
nested form actually shows and the form the engine chooses (docs/data_driven.md §6.1, "A bias of the
choice toward the nested form").

    python -m benchmarks.form_choice_bias --users 30000 --mechanism touch_decay
"""

from __future__ import annotations

import argparse
import math
from datetime import timedelta

import numpy as np
import polars as pl

import optiq_engine as oq
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


def best(candidates: list[JourneyModel], form: str) -> JourneyModel:
    return min((c for c in candidates if c.form == form and math.isfinite(c.half_life)), key=lambda c: c.bic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=30_000)
    parser.add_argument("--mechanism", default="touch_decay")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    world = worlds.generate(args.mechanism, n_users=args.users, seed=0)
    fitted = oq.attribute(world.touchpoints, world.conversions, models=["DATA_DRIVEN"]).fitted["DATA_DRIVEN"]
    table, model = fitted.paths, fitted.model
    candidates, _ = choose_candidates(table, l2=float(model.l2), seed=model.seed)
    touch = best(candidates, "touch")
    print(f"world {args.mechanism}: chosen {fitted.mechanism}; touch form's half-life {touch.half_life:.2f} days")
    conversions = simulate_from(touch, table.channels, world.touchpoints, args.seed)
    again = oq.attribute(world.touchpoints, conversions, models=["DATA_DRIVEN"]).fitted["DATA_DRIVEN"]
    selection = again.form_selection
    ll = {f: selection.filter(pl.col("form") == f).get_column("log_likelihood").max() for f in ("touch", "both")}
    print(
        f"simulated from the touch form ({conversions.height:,} conversions): chosen {again.mechanism} "
        f"(weight {again.mechanism_weight:.3f}); nested form's gain {ll['both'] - ll['touch']:.1f} "
        f"log-likelihood units for {len(table.channels) + 1} more parameters"
    )


if __name__ == "__main__":
    main()
