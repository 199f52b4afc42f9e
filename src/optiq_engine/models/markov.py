"""MARKOV(order=k): exact removal effects of the absorbing chain (docs/data_driven.md §3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import polars as pl
import scipy.sparse
import scipy.sparse.linalg

from ..errors import ConfigError, ModelError
from ..kernels import markov as k
from .base import register_model
from .fitted import DataDrivenModel, FittedModel, bootstrap_shares, credit_frame, normalise

if TYPE_CHECKING:
    from ..paths import PathTable

__all__ = ["Markov", "FittedMarkov", "MarkovChain"]

_DENSE_STATES = 400  # below this many states, dense LU is faster than sparse


@register_model
@dataclass(frozen=True)
class Markov(DataDrivenModel):
    """Channel credit from the removal effects of an order-``order`` absorbing Markov chain.

    ``self_transitions`` (``"keep"`` or ``"drop"``) changes the reported transition matrix only: removal
    effects do not depend on it (docs/data_driven.md §3).

    Parameters
    ----------
    order
        Order of the chain: a state is the last ``order`` channels of the path (an integer in 1..4, default
        1; ``markov_order`` when given by name).
    self_transitions
        ``"keep"`` (default) or ``"drop"`` the transitions from a state to itself in
        :attr:`FittedMarkov.transition_matrix`.
    transform, remove_direct_if_not_all, bootstrap, level, seed
        Shared by every data-driven model (:class:`~optiq_engine.models.DataDrivenModel`).

    Raises
    ------
    ConfigError
        ``order`` is not an integer in 1..4, ``self_transitions`` is neither ``"keep"`` nor ``"drop"``, or a
        shared parameter is invalid.
    """

    name = "MARKOV"
    order: int = 1
    self_transitions: str = "keep"

    config_fields: ClassVar[dict[str, str]] = {**DataDrivenModel.config_fields, "order": "markov_order"}

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.order, bool) or not isinstance(self.order, (int, np.integer)) or not 1 <= self.order <= 4:
            raise ConfigError(f"MARKOV order must be an integer in 1..4, got {self.order!r}")
        if self.self_transitions not in ("keep", "drop"):
            raise ConfigError(f"MARKOV self_transitions must be 'keep' or 'drop', got {self.self_transitions!r}")

    def fit(self, table: PathTable, *, direct_channels: tuple[str, ...] = ("direct",)) -> FittedMarkov:
        """Fit the chain on a path table: its removal effects, normalised to shares (and their bootstrap).

        Parameters
        ----------
        table
            The path table (already transformed with ``self.transform``): paths with their conversions and
            nulls.
        direct_channels
            Not used by MARKOV (the common signature of :meth:`DataDrivenModel.fit`).

        Returns
        -------
        FittedMarkov
            ``channel_credit`` with ``removal_effect``, the chain and its transition counts.

        Raises
        ------
        ModelError
            Too many states to number (``(channels + 1) ** order >= 2**62``), or the paths' conversion
            values sum to 2**63 micros or more.
        """
        chain = MarkovChain(table, self.order)
        weights = chain.pair_weights(table.conversions, table.nulls)
        p, removed = chain.solve(weights, drop_self=self.self_transitions == "drop")
        removal = np.where(p > 0, 1.0 - removed / p, 0.0) if p > 0 else np.zeros_like(removed)
        shares = normalise(removal)
        replicates = bootstrap_shares(self, table, lambda c, n: _shares(chain, c, n))
        return FittedMarkov(
            model=self,
            channel_credit=credit_frame(table, shares, ("removal_effect", removal), replicates, self.level),
            paths=table,
            replicates=replicates,
            p_conversion=p,
            chain=chain,
            pair_counts=weights,
        )


def _shares(chain: MarkovChain, conversions: np.ndarray, nulls: np.ndarray) -> np.ndarray:
    p, removed = chain.solve(chain.pair_weights(conversions, nulls), drop_self=False)
    return normalise(1.0 - removed / p) if p > 0 else np.zeros_like(removed)


class MarkovChain:
    """The states and transitions of a path table's chain; solved for any reweighting of its paths.

    Parameters
    ----------
    table
        The path table whose paths define the states (the last ``order`` channels) and transitions.
    order
        Order of the chain (1..4; :class:`Markov` checks it).

    Raises
    ------
    ModelError
        ``(channels + 1) ** order >= 2**62``: the states cannot be numbered in 64 bits.
    """

    def __init__(self, table: PathTable, order: int) -> None:
        n_codes = len(table.channels)
        if (n_codes + 1) ** order >= 2**62:
            raise ModelError(f"MARKOV order {order} with {n_codes} channels: too many states to number")
        self.order = order
        self.channels = table.channels
        self._table = table
        self._dense_cell: np.ndarray | None = None
        if order == 1:  # states are START and every channel: a dense layout, no numbering pass
            s = n_codes + 1
            keys = np.arange(s, dtype=np.int64)
            self.pair_src = np.repeat(np.arange(s), s + 2)
            self.pair_dst = np.tile(np.arange(s + 2), s)
        elif (n_codes + 1) ** order <= _DENSE_KEYS:  # every key has a row of a dense count matrix
            keys, s = self._dense_layout(table, order, n_codes)
        else:
            src, dst, self._entry_path, self._entry_kind = k.transition_entries(
                table.offsets, table.codes, order, n_codes
            )
            keys, (si, dj) = _number(np.concatenate([[k.START], src, dst[dst >= 0]]), src, np.maximum(dst, 0))
            s = keys.shape[0]
            di = np.where(dst >= 0, dj, np.where(dst == k.CONVERSION, s, s + 1))
            pairs, (self._entry_pair,) = _number(si * (s + 2) + di, si * (s + 2) + di)
            self.pair_src = pairs // (s + 2)
            self.pair_dst = pairs % (s + 2)
        self.keys = keys
        self.n_states = s
        # contains[i, c]: state i's tuple holds channel c (digits of the key, base C + 1, are code + 1).
        base = n_codes + 1
        contains = np.zeros((s, n_codes), dtype=np.bool_)
        rest = keys.copy()
        for _ in range(order):
            digit = rest % base
            has = digit > 0
            contains[np.flatnonzero(has), digit[has] - 1] = True
            rest //= base
        self.contains = contains

    def _dense_layout(self, table: PathTable, order: int, n_codes: int) -> tuple[np.ndarray, int]:
        """States and transitions read off the dense matrix of the transitions present (keys of at most
        :data:`_DENSE_KEYS` possible states): no entry per touch, only the distinct transitions sorted. The
        same states, pairs and pair order as numbering the entries; sets ``pair_src``, ``pair_dst`` and
        ``_dense_cell`` (each pair's cell of the dense counts)."""
        present = k.dense_transitions(table.offsets, table.codes, table.conversions, table.nulls, order, n_codes, True)
        width = present.shape[1]
        src_key, col = np.nonzero(present)
        dst_key = col[col < width - 2]
        keys, (si, dj) = _number(
            np.concatenate([[k.START], src_key, dst_key]), src_key, np.where(col < width - 2, col, 0)
        )
        s = keys.shape[0]
        di = np.where(col < width - 2, dj, np.where(col == width - 2, s, s + 1))
        pairs = si * (s + 2) + di
        by_pair = np.argsort(pairs, kind="stable")
        self.pair_src, self.pair_dst = pairs[by_pair] // (s + 2), pairs[by_pair] % (s + 2)
        self._dense_cell = (src_key * width + col)[by_pair]
        return keys, s

    def pair_weights(self, conversions: np.ndarray, nulls: np.ndarray) -> np.ndarray:
        """Count of every distinct transition for the given path weights.

        Parameters
        ----------
        conversions, nulls
            Weight of every path row of the table as converting and as non-converting journeys (the
            table's own counts, or a bootstrap replicate's).

        Returns
        -------
        numpy.ndarray
            float64, one count per distinct transition (aligned with ``pair_src`` / ``pair_dst``).
        """
        t = self._table
        if self.order == 1:
            return k.order1_counts(t.offsets, t.codes, conversions, nulls, len(self.channels)).reshape(-1)
        if self._dense_cell is not None:
            counts = k.dense_transitions(t.offsets, t.codes, conversions, nulls, self.order, len(self.channels), False)
            return counts.reshape(-1)[self._dense_cell]
        w = k.entry_weights(self._entry_path, self._entry_kind, conversions, nulls)
        return np.bincount(self._entry_pair, weights=w, minlength=self.pair_src.shape[0])

    def probabilities(self, weights: np.ndarray, *, drop_self: bool = False) -> np.ndarray:
        """Transition probability of every distinct transition (rows with no count have none).

        Parameters
        ----------
        weights
            Transition counts (:meth:`pair_weights`).
        drop_self
            Leave out the transitions from a state to itself before normalising (default False).

        Returns
        -------
        numpy.ndarray
            float64 per distinct transition; 0 where the source state has no count.
        """
        w = np.where(self.pair_src == self.pair_dst, 0.0, weights) if drop_self else weights
        totals = np.bincount(self.pair_src, weights=w, minlength=self.n_states)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals[self.pair_src] > 0, w / totals[self.pair_src], 0.0)

    def solve(self, weights: np.ndarray, *, drop_self: bool = False) -> tuple[float, np.ndarray]:
        """P(conversion) from START and, for every channel, the same with the channel removed.

        Parameters
        ----------
        weights
            Transition counts (:meth:`pair_weights`).
        drop_self
            Solve the chain without self-transitions (default False; removal effects are the same).

        Returns
        -------
        p : float
            Probability of reaching conversion from START.
        removed : numpy.ndarray
            Per channel code, that probability when every state holding the channel is removed (``p`` for a
            channel in no state).
        """
        prob = self.probabilities(weights, drop_self=drop_self)
        s = self.n_states
        inner = self.pair_dst < s
        to_conv = self.pair_dst == s
        r = np.bincount(self.pair_src[to_conv], weights=prob[to_conv], minlength=s)
        removed = np.empty(self.contains.shape[1], dtype=np.float64)
        if s <= _DENSE_STATES:
            a = np.eye(s)
            a[self.pair_src[inner], self.pair_dst[inner]] -= prob[inner]
            p = float(np.linalg.solve(a, r)[0])
            for c in range(removed.shape[0]):
                keep = np.flatnonzero(~self.contains[:, c])  # START (index 0) is always kept
                removed[c] = np.linalg.solve(a[np.ix_(keep, keep)], r[keep])[0] if keep.shape[0] < s else p
            return p, removed
        q = scipy.sparse.csr_matrix((prob[inner], (self.pair_src[inner], self.pair_dst[inner])), shape=(s, s))
        a = (scipy.sparse.identity(s, format="csr") - q).tocsr()
        p = float(scipy.sparse.linalg.splu(a.tocsc()).solve(r)[0])
        for c in range(removed.shape[0]):
            keep = np.flatnonzero(~self.contains[:, c])
            if keep.shape[0] == s:
                removed[c] = p
            else:
                removed[c] = scipy.sparse.linalg.splu(a[keep][:, keep].tocsc()).solve(r[keep])[0]
        return p, removed

    def transition_frame(self, weights: np.ndarray, *, drop_self: bool = False) -> pl.DataFrame:
        """``from_state``, ``to_state``, ``count``, ``probability`` (states as ``"a > b"`` strings).

        Parameters
        ----------
        weights
            Transition counts (:meth:`pair_weights`): only transitions with a positive count are listed.
        drop_self
            Leave out self-transitions (and compute the probabilities without them); default False.

        Returns
        -------
        polars.DataFrame
            One row per observed transition; targets ``(conversion)`` and ``(null)`` are the absorbing
            states.
        """
        names = [*self.state_names(), "(conversion)", "(null)"]
        prob = self.probabilities(weights, drop_self=drop_self)
        keep = (weights > 0) & (self.pair_dst != 0)  # nothing returns to START
        if drop_self:
            keep &= self.pair_src != self.pair_dst
        return pl.DataFrame(
            {
                "from_state": pl.Series([names[i] for i in self.pair_src[keep]], dtype=pl.String),
                "to_state": pl.Series([names[i] for i in self.pair_dst[keep]], dtype=pl.String),
                "count": weights[keep],
                "probability": prob[keep],
            }
        )

    def state_names(self) -> list[str]:
        """Names of the transient states: ``(start)`` and channel tuples ``"a > b"``."""
        base = len(self.channels) + 1
        out = []
        for key in self.keys.tolist():
            digits = []
            while key:
                digits.append(key % base)
                key //= base
            out.append(" > ".join(self.channels[d - 1] for d in reversed(digits) if d) or "(start)")
        return out


#: Order >= 2 chains whose possible states are at most this many count transitions in a dense matrix.
_DENSE_KEYS = 1023


def _number(values: np.ndarray, *lookups: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The distinct ``values`` (sorted) and the index of every element of each of ``lookups`` among them.

    Keys of small ranges are numbered through a dense table (linear time); others by sorting.
    """
    top = int(values.max()) + 1 if values.size else 1
    if top <= 1 << 26:
        present = np.zeros(top, dtype=np.bool_)
        present[values] = True
        distinct = np.flatnonzero(present)
        index = np.cumsum(present) - 1
        return distinct, tuple(index[x] for x in lookups)
    distinct = np.unique(values)
    return distinct, tuple(np.searchsorted(distinct, x) for x in lookups)


@dataclass(frozen=True, eq=False, repr=False)
class FittedMarkov(FittedModel):
    """A fitted :class:`Markov` model: ``channel_credit`` plus the chain.

    Made by :meth:`Markov.fit`.

    Parameters
    ----------
    model, channel_credit, paths, replicates, baseline_conversions, balance, credit_gap
        As :class:`~optiq_engine.models.FittedModel`.
    p_conversion
        Probability of reaching conversion from START in the fitted chain.
    chain
        The :class:`MarkovChain` fitted on ``paths``.
    pair_counts
        Its transition counts (:meth:`MarkovChain.pair_weights` of the table's counts).
    """

    p_conversion: float = 0.0
    chain: MarkovChain | None = None
    pair_counts: np.ndarray | None = None

    @property
    def removal_effects(self) -> pl.DataFrame:
        return self.channel_credit.select("channel", "removal_effect")

    @property
    def transition_matrix(self) -> pl.DataFrame:
        """Observed transitions with counts and probabilities."""
        assert self.chain is not None and self.pair_counts is not None
        drop = self.model.self_transitions == "drop"  # type: ignore[attr-defined]
        return self.chain.transition_frame(self.pair_counts, drop_self=drop)
