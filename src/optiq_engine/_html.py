"""HTML summaries of results for notebooks (``_repr_html_`` of AttributionResult and FittedModel)."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from .models import FittedModel
    from .result import AttributionResult

MICROS = 1_000_000
_STYLE = "border-collapse:collapse;font-size:12px"
_CELL = "padding:2px 8px;text-align:{align}"


def _table(header: list[str], rows: list[list[Any]], *, first_left: bool = True) -> str:
    def cell(tag: str, value: Any, i: int) -> str:
        align = "left" if (i == 0 and first_left) else "right"
        return f'<{tag} style="{_CELL.format(align=align)}">{escape(str(value))}</{tag}>'

    head = "".join(cell("th", h, i) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", v, i) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f'<table style="{_STYLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _money(micros: float) -> str:
    return f"{micros / MICROS:,.2f}"


def result_html(result: AttributionResult) -> str:
    """Models, conversions attributed / unattributed, and credit per channel x model."""
    unattributed = result.unattributed
    per_model = "model" in unattributed.columns
    everywhere = unattributed.filter(pl.col("model").is_null()).height if per_model else unattributed.height
    attributed = result.n_conversions - everywhere
    facts = [
        ["models", ", ".join(result.model_names)],
        ["conversions", f"{result.n_conversions:,}"],
        ["attributed", f"{attributed:,}"],
        ["unattributed by every model (no eligible touchpoint)", f"{everywhere:,}"],
        ["links", f"{result.links.height:,}"],
    ]
    if per_model and unattributed.height > everywhere:  # docs/data_driven.md §5: baseline conversions
        by_model = unattributed.filter(pl.col("model").is_not_null()).group_by("model", maintain_order=True).len()
        facts.append(
            [
                "also unattributed by one model (baseline conversions)",
                ", ".join(f"{m} {n:,}" for m, n in by_model.iter_rows()),
            ]
        )
    quarantined = {k: v.height for k, v in result.quarantined.items() if v.height}
    if quarantined:
        facts.append(["quarantined", ", ".join(f"{k} {v:,}" for k, v in quarantined.items())])
    if result.unattributed.height and "reason" in result.unattributed.columns:
        reasons = result.unattributed.group_by("reason").len().sort("len", descending=True)
        facts.append(["unattributed by reason", ", ".join(f"{r} {n:,}" for r, n in reasons.iter_rows())])
    credit = result.credit.with_columns(pl.col("model", "channel").cast(pl.String))
    models = [m for m in result.model_names if m in set(credit.get_column("model").to_list())]
    conv = {(m, c): v for m, c, v in credit.select("model", "channel", "conversions").iter_rows()}
    value = {(m, c): v for m, c, v in credit.select("model", "channel", "value_micros").iter_rows()}
    channels = list(dict.fromkeys(credit.get_column("channel").to_list()))
    rows = [[c, *(f"{conv.get((m, c), 0.0):,.1f}" for m in models)] for c in channels]
    rows.append(["total conversions", *(f"{sum(conv.get((m, c), 0.0) for c in channels):,.1f}" for m in models)])
    rows.append(["total value", *(_money(sum(value.get((m, c), 0) for c in channels)) for m in models)])
    return (
        "<div><strong>AttributionResult</strong>"
        + _table(["", ""], facts)
        + "<div style='margin-top:6px'>Attributed conversions per channel (value in currency units)</div>"
        + _table(["channel", *models], rows)
        + "</div>"
    )


_STATISTICS = ("removal_effect", "shapley_value", "incremental_conversions")


def _intent(fitted: FittedModel) -> str:
    """A calibrated DATA_DRIVEN fit's intent term, largest first ("" without one; docs/data_driven.md §6.1)."""
    model = getattr(fitted, "conversion_model", None)
    held = getattr(model, "held", None)
    if model is None or held is None or not held.any():
        return ""
    rows = model.coefficients(fitted.paths.channels).filter(pl.col("part") == "intent")
    top = sorted(zip(rows["term"], rows["coef"], strict=True), key=lambda r: -abs(r[1]))[:6]
    return ", ".join(f"{t} {c:+.3f}" for t, c in top)


def fitted_html(fitted: FittedModel) -> str:
    """The model and its parameters, what it was fitted on, and its channel credit (largest share first)."""
    facts = [
        ["model", repr(fitted.model)],
        ["distinct paths", f"{fitted.paths.height:,}"],
        ["converting journeys", f"{fitted.paths.total_conversions:,.0f}"],
        ["non-converting journeys", f"{float(fitted.paths.nulls.sum()):,.0f}"],
    ]
    for label, attr in (("P(conversion)", "p_conversion"), ("baseline rate", "baseline_rate")):
        value = getattr(fitted, attr, None)
        if isinstance(value, float):
            facts.append([label, f"{value:.4f}"])
    mechanism = getattr(fitted, "mechanism", None)
    if isinstance(mechanism, str):  # DATA_DRIVEN: how conversions happen according to the fit
        facts.append(["mechanism", f"{mechanism} (BIC weight {fitted.mechanism_weight:.2f})"])  # type: ignore[attr-defined]
        forms = getattr(fitted, "form_weights", {})
        if forms:
            facts.append(["form weights", ", ".join(f"{f} {w:.2f}" for f, w in forms.items())])
        facts.append(["fitted on", _history(fitted)])
    checks = getattr(fitted, "experiment_checks", None)
    if checks is not None:
        for r in checks.iter_rows(named=True):
            facts.append(
                [
                    f"experiment on {r['channel']}",
                    f"{r['incremental_conversions']:,.1f} ± {r['std_error']:,.1f}; the data alone "
                    f"{r['observational_incremental']:,.1f}; calibrated model {r['model_incremental']:,.1f} "
                    f"(z = {r['z']:+.2f})",
                ]
            )
        intent = _intent(fitted)
        if intent:
            label = (
                "intent the experiments revealed (log-odds per unit of stock; +: observed effect inflated, -: masked)"
            )
            facts.append([label, intent])
    if fitted.baseline_conversions:  # docs/data_driven.md §5
        facts.append(["baseline conversions (no channel credited: unattributed)", f"{fitted.baseline_conversions:,}"])
    balance = getattr(fitted, "balance", None)
    if balance is not None and getattr(fitted, "path_phi", None) is not None:  # DATA_DRIVEN: drawn, not balanced
        facts.append(["links", "each conversion credited by its own φ with probability Σφ/p, else baseline"])
        facts.append(
            [
                "credited shares vs share (half L1; the draws' noise, credit of touches older than the lookback, "
                "repeat conversions credited by a fit on first journeys, paths converting unlike the model says: "
                "cut journeys, a fit calibrated by experiments; the intervals bound share)",
                f"{fitted.credit_gap:.4f}",
            ]
        )
        older = getattr(fitted, "credit_before_lookback", 0.0)
        if older:
            facts.append(["credit of touches older than the lookback (not credited)", f"{older:.1%}"])
    elif balance is not None:  # docs/data_driven.md §5: the links' channel totals against the shares
        how = (
            f"{balance.iterations} steps, largest relative error {balance.residual:.1e}"
            if balance.balanced
            else "not balanced (transform='first')"
        )
        facts.append(["links balanced to the shares", how])
        facts.append(["credited shares vs share (half L1)", f"{fitted.credit_gap:.4f}"])
    cc = fitted.channel_credit.sort("share", descending=True)
    stat = next((s for s in _STATISTICS if s in cc.columns), None)
    ci = "ci_low" in cc.columns
    header = ["channel", "share", *(["ci_low", "ci_high"] if ci else []), "conversions", "value"]
    header += [stat] if stat else []
    rows = []
    for r in cc.iter_rows(named=True):
        row = [r["channel"], f"{r['share']:.4f}"]
        row += [f"{r['ci_low']:.4f}", f"{r['ci_high']:.4f}"] if ci else []
        row += [f"{r['conversions']:,.1f}", _money(r["value_micros"])]
        row += [f"{r[stat]:.4g}"] if stat else []
        rows.append(row)
    return (
        f"<div><strong>{escape(type(fitted).__name__)}</strong>"
        + _table(["", ""], facts)
        + "<div style='margin-top:6px'>Channel credit (value in currency units)</div>"
        + _table(header, rows)
        + "</div>"
    )


def _history(fitted: Any) -> str:
    """Which history DATA_DRIVEN was fitted on, and with ``fit_on="auto"`` by how much it predicted better."""
    label = {"journeys": "whole first journeys", "windows": "first journeys' lookback windows"}
    text = label.get(fitted.history, "a path table given to fit (its history unknown)")
    ll = fitted.history_loglik
    if ll:
        other = next(h for h in ll if h != fitted.history)
        text += f" (reference conversion log-likelihood {ll[fitted.history] - ll[other]:+,.1f} over the {other})"
    return text
