"""Seeded synthetic touchpoints and conversions with a known ground truth (``oq.synthetic``).

The generator simulates users who are touched by marketing channels over a period of ``days`` and who
convert according to a known per-touch hazard model in which every channel has a true effect
``beta_c``. Because the model is known, each channel's incremental contribution can be computed
exactly; it is returned in :attr:`SyntheticData.truth` so that attribution models can be scored
against it. The generative model and the definition of the truth are written down in
``docs/synthetic.md``. Named presets of the model (:data:`SCENARIOS`: additive effects, a late channel,
reach without effect, correlated channels, interactions, saturation, an order effect) are selected with
``scenario=``; a custom :class:`Scenario` can be passed instead (``docs/synthetic.md`` §9).

Everything is deterministic for a ``seed``: randomness is drawn per fixed block of users
(``numpy.random.SeedSequence([seed, block_index])``), never per batch, so :func:`iter_generate`
yields the very rows of :func:`generate`, whatever ``batch_users`` is.

The modules, in the order data flows through them:

- :mod:`.scenarios`: the channels, their UTM tags, the default parameters and the named scenarios;
- :mod:`.generator`: :func:`generate` and :func:`iter_generate`, their validation, batches of users;
- :mod:`.simulation`: one block of users, drawn from the block's own random generator;
- :mod:`._kernels`: the Numba kernels (touch times, channels, conversions and the exact truth, ids);
- :mod:`.frames`: the touchpoints, conversions and truth frames of a batch (:class:`SyntheticData`).
"""

from __future__ import annotations

from .frames import SyntheticData
from .generator import generate, iter_generate
from .scenarios import (
    CHANNEL_CAMPAIGNS,
    CHANNEL_UTM,
    CHANNELS,
    SCENARIOS,
    ChannelParams,
    Follower,
    Interaction,
    OrderEffect,
    Scenario,
    get_scenario,
)

__all__ = [
    "CHANNELS",
    "CHANNEL_UTM",
    "CHANNEL_CAMPAIGNS",
    "SCENARIOS",
    "ChannelParams",
    "Follower",
    "Interaction",
    "OrderEffect",
    "Scenario",
    "SyntheticData",
    "generate",
    "get_scenario",
    "iter_generate",
]
