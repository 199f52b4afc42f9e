"""Reference path rules of the heuristic models (docs/attribution.md "Path rules").

Written for obviousness, not speed, from the docs: a conversion's window is cut to its latest
``max_touchpoints`` touches, then the direct rule and then the touch rule pick the touches that are
credited; the model's weights and the value split are those of the kept touches alone (the heuristic
reference, :mod:`tests.reference.attribution`), every other touch keeps its link with weight 0 and 0 micros.
"""

from __future__ import annotations

from tests.reference.attribution import MICROS_PER_DAY, attribute_reference, model_weights, split_value

TOUCH_RULES = ("all", "collapse_repeats", "first_per_channel")
DROP_DIRECT = ("never", "unless_all_direct", "trailing_unless_all_direct")


def kept_indices(
    channels: list[str],
    *,
    touch_rule: str = "all",
    drop_direct: str = "never",
    max_touchpoints: int | None = None,
    direct_channels: tuple[str, ...] = ("direct",),
) -> list[int]:
    """Indices (0-based, in position order) of the touches of a window that the heuristic models credit."""
    kept = list(range(len(channels)))

    # 1. The cap: the latest max_touchpoints touches.
    if max_touchpoints is not None and len(kept) > max_touchpoints:
        kept = kept[len(kept) - max_touchpoints :]

    # 2. Direct touches, only when some kept touch is not direct.
    all_direct = all(channels[i] in direct_channels for i in kept)
    if drop_direct == "unless_all_direct" and not all_direct:
        kept = [i for i in kept if channels[i] not in direct_channels]
    if drop_direct == "trailing_unless_all_direct" and not all_direct:
        while channels[kept[-1]] in direct_channels:
            kept.pop()

    # 3. The touch rule.
    if touch_rule == "collapse_repeats":
        collapsed = []
        for p, i in enumerate(kept):
            if p == 0 or channels[kept[p - 1]] != channels[i]:
                collapsed.append(i)
        kept = collapsed
    elif touch_rule == "first_per_channel":
        seen: set[str] = set()
        firsts = []
        for i in kept:
            if channels[i] not in seen:
                firsts.append(i)
                seen.add(channels[i])
        kept = firsts
    elif touch_rule != "all":
        raise ValueError(f"unknown touch rule {touch_rule!r}")
    return kept


def transform_path(path: list[str], **rules) -> list[str]:
    """The channels of the kept touches: the transformed path."""
    return [path[i] for i in kept_indices(path, **rules)]


def attribute_with_path_rules(
    touchpoints: list[dict],
    conversions: list[dict],
    *,
    models: list[tuple[str, dict]],
    lookback_us: int = 30 * MICROS_PER_DAY,
    reset_after_conversion: bool = True,
    group_by: tuple[str, ...] = ("anon_id",),
    direct_channels: tuple[str, ...] = ("direct",),
    touch_rule: str = "all",
    drop_direct: str = "never",
    max_touchpoints: int | None = None,
) -> tuple[list[dict], list[dict]]:
    """:func:`attribute_reference`'s links and unattributed rows, the weights and micros under the path rules."""
    links, unattributed = attribute_reference(
        touchpoints,
        conversions,
        models=models,
        lookback_us=lookback_us,
        reset_after_conversion=reset_after_conversion,
        group_by=group_by,
        direct_channels=direct_channels,
    )
    params = dict(models)
    times = {t["touchpoint_id"]: t["occurred_at"] for t in touchpoints}
    values = {c["conversion_id"]: c.get("value_micros") or 0 for c in conversions}
    journeys: dict[tuple[str, str], list[dict]] = {}
    for link in links:
        journeys.setdefault((link["conversion_id"], link["model"]), []).append(link)
    for (conversion_id, model), rows in journeys.items():
        rows.sort(key=lambda r: r["position"])
        channels = [r["channel"] for r in rows]
        kept = kept_indices(
            channels,
            touch_rule=touch_rule,
            drop_direct=drop_direct,
            max_touchpoints=max_touchpoints,
            direct_channels=direct_channels,
        )
        weights = model_weights(
            model,
            params[model],
            [times[rows[i]["touchpoint_id"]] for i in kept],
            [channels[i] for i in kept],
            direct_channels=direct_channels,
        )
        credited = split_value(values[conversion_id], weights)
        for row in rows:
            row["weight"], row["credited_value_micros"] = 0.0, 0
        for i, w, v in zip(kept, weights, credited, strict=True):
            rows[i]["weight"], rows[i]["credited_value_micros"] = w, v
    return links, unattributed
