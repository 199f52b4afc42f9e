"""The generator's entry points: :func:`generate` and :func:`iter_generate`, their validation and batching.

Users are simulated in fixed blocks of :data:`_BLOCK_USERS` (:mod:`.simulation`) and cut into batches of
``batch_users`` (:func:`_iter_batches`), each turned into frames (:mod:`.frames`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np

from ...errors import ConfigError
from .frames import SyntheticData, _build_batch
from .scenarios import SCENARIOS, Scenario, get_scenario
from .simulation import _Block, _Model, _Params, _simulate_block

__all__ = ["generate", "iter_generate"]

_BLOCK_USERS = 1 << 16  # users per random block; fixed, never derived from batch_users
_MAX_TOUCHPOINTS_PER_USER_MEAN = 100.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def generate(
    *,
    n_users: int = 200_000,
    touchpoints_per_user: float = 5.0,
    days: int = 90,
    n_organizations: int = 1,
    sites_per_organization: int = 1,
    seed: int = 0,
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    scenario: str | Scenario = "default",
) -> SyntheticData:
    """Generate a synthetic data set with its ground truth.

    Parameters
    ----------
    n_users : int
        Number of users (each has at least one touchpoint).
    touchpoints_per_user : float
        Mean number of touchpoints per user, in ``[1, 100]``.
    days : int
        Length of the period; every timestamp lies in ``[start, start + days)``.
    n_organizations, sites_per_organization : int
        Every user belongs to one organization (``org_1`` ...) and one of its sites (``site_1_1`` ...).
    seed : int
        Non-negative seed; the same seed gives the same frames, bit for bit.
    start : datetime
        Timezone-aware start of the period.
    scenario : str or Scenario
        The generative model: a name of :data:`SCENARIOS` (``"default"``: the model of
        ``docs/synthetic.md`` §2-3) or a custom :class:`Scenario`.

    Returns
    -------
    SyntheticData
        The touchpoints, the conversions and the truth for all users.

    Raises
    ------
    ConfigError
        If an argument is out of range (the message names it).

    Notes
    -----
    The model and the exact definition of the truth are in ``docs/synthetic.md``. The default sizes
    give about 1M touchpoints and 0.1M conversions.

    Examples
    --------
    >>> data = generate(n_users=1_000, seed=1)
    >>> round(data.truth["true_share"].sum(), 12)
    1.0
    """
    params = _validate(
        n_users=n_users,
        touchpoints_per_user=touchpoints_per_user,
        days=days,
        n_organizations=n_organizations,
        sites_per_organization=sites_per_organization,
        seed=seed,
        start=start,
        scenario=scenario,
    )
    return next(_iter_batches(params, params.n_users))


def iter_generate(
    *,
    batch_users: int = 1_000_000,
    n_users: int = 200_000,
    touchpoints_per_user: float = 5.0,
    days: int = 90,
    n_organizations: int = 1,
    sites_per_organization: int = 1,
    seed: int = 0,
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    scenario: str | Scenario = "default",
) -> Iterator[SyntheticData]:
    """Generate the data set of :func:`generate` in batches of users.

    Parameters
    ----------
    batch_users : int
        Users per batch (the last batch may be smaller); a user never spans two batches.
    n_users, touchpoints_per_user, days, n_organizations, sites_per_organization, seed, start, scenario
        As for :func:`generate`.

    Returns
    -------
    Iterator[SyntheticData]
        Batches whose concatenated frames equal those of ``generate(...)`` with the same arguments
        (same ids, rows and order); each batch's ``truth`` is computed over the batch's users.

    Raises
    ------
    ConfigError
        If an argument is out of range (raised by this call, before any batch is produced).

    Examples
    --------
    >>> sizes = [b.touchpoints.height for b in iter_generate(batch_users=400, n_users=1_000)]
    >>> len(sizes)
    3
    """
    params = _validate(
        n_users=n_users,
        touchpoints_per_user=touchpoints_per_user,
        days=days,
        n_organizations=n_organizations,
        sites_per_organization=sites_per_organization,
        seed=seed,
        start=start,
        scenario=scenario,
    )
    _check_int("batch_users", batch_users, 1)
    return _iter_batches(params, batch_users)


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


def _check_int(field: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an int ``>= minimum``, else raise a ConfigError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{field} must be an int >= {minimum}, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ConfigError(f"{field} must be >= {minimum}, got {value!r}.")
    return int(value)


def _validate(
    *,
    n_users: int,
    touchpoints_per_user: float,
    days: int,
    n_organizations: int,
    sites_per_organization: int,
    seed: int,
    start: datetime,
    scenario: str | Scenario,
) -> _Params:
    """Check the generator arguments and return them normalised."""
    if isinstance(scenario, str):
        scenario = get_scenario(scenario)
    elif not isinstance(scenario, Scenario):
        raise ConfigError(
            f"scenario must be one of {', '.join(SCENARIOS)} or a Scenario, got {scenario!r} ({type(scenario).__name__})."
        )
    tpu = touchpoints_per_user
    if isinstance(tpu, bool) or not isinstance(tpu, int | float | np.integer | np.floating):
        raise ConfigError(f"touchpoints_per_user must be a number, got {tpu!r} ({type(tpu).__name__}).")
    if not (1.0 <= float(tpu) <= _MAX_TOUCHPOINTS_PER_USER_MEAN):
        raise ConfigError(
            f"touchpoints_per_user must be in [1, {_MAX_TOUCHPOINTS_PER_USER_MEAN:g}] (every user has at "
            f"least one touchpoint), got {tpu!r}."
        )
    if not isinstance(start, datetime):
        raise ConfigError(f"start must be a datetime, got {start!r} ({type(start).__name__}).")
    if start.tzinfo is None or start.utcoffset() is None:
        raise ConfigError(f"start must be timezone-aware (e.g. tzinfo=UTC), got naive {start!r}.")
    days = _check_int("days", days, 1)
    try:
        start.astimezone(UTC) + timedelta(days=days)
    except OverflowError:
        raise ConfigError(
            f"start + days must not pass the year 9999, got start={start!r} with days={days}; pick an earlier start."
        ) from None
    return _Params(
        n_users=_check_int("n_users", n_users, 1),
        touchpoints_per_user=float(tpu),
        days=days,
        n_organizations=_check_int("n_organizations", n_organizations, 1),
        sites_per_organization=_check_int("sites_per_organization", sites_per_organization, 1),
        seed=_check_int("seed", seed, 0),
        start_us=(start.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1),
        scenario=scenario,
        model=_Model.of(scenario),
    )


# ---------------------------------------------------------------------------------------------
# batching
# ---------------------------------------------------------------------------------------------


def _iter_batches(params: _Params, batch_users: int) -> Iterator[SyntheticData]:
    """Yield the batches ``[0, batch_users), [batch_users, 2 * batch_users), ...`` of users.

    Blocks are simulated in order, each exactly once; the global numbers of a block's first
    touchpoint and conversion are the running totals of the blocks before it.
    """
    current: _Block | None = None
    touch_base = conversion_base = 0
    for lo in range(0, params.n_users, batch_users):
        hi = min(lo + batch_users, params.n_users)
        parts = []
        for block_index in range(lo // _BLOCK_USERS, (hi - 1) // _BLOCK_USERS + 1):
            if current is None or current.first_user != block_index * _BLOCK_USERS:
                current = _simulate_block(params, block_index, _BLOCK_USERS, touch_base, conversion_base)
                touch_base += int(current.touch_offsets[-1])
                conversion_base += int(current.conversion_offsets[-1])
            first = current.first_user
            parts.append((current, max(lo - first, 0), min(hi - first, current.n_users)))
        yield _build_batch(params, parts)
