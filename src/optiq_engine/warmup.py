"""Compile the engine's Numba kernels ahead of time, into the on-disk cache (``optiq warmup``).

The first call of a kernel in a fresh environment compiles it (seconds per kernel, see
:mod:`optiq_engine.kernels._jit`); later processes load it from the on-disk cache. :func:`warm_up` runs the
engine's common paths on tiny inputs built here, so that a Docker image, a CI job or a Spark worker's
environment pays the compile once, when it is built, and a first real call compiles nothing.

The inputs hold what makes a path compile more than the plain case: touchpoints tied on the same
microsecond (their order by id), conversions without touchpoints, a direct channel, path rules.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = ["WarmupStage", "warm_up"]

_T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
_CHANNELS = ("google_ads", "facebook", "email", "direct", "organic_search")


@dataclass(frozen=True)
class WarmupStage:
    """One stage of :func:`warm_up`.

    Parameters
    ----------
    name, seconds, compile_seconds
        The fields described under Attributes.
    functions
        Described under Attributes (default 0).

    Attributes
    ----------
    name
        What ran (``"attribute: heuristic models"``, ``"journeys"``, ...).
    seconds
        Wall seconds of the stage, compile included.
    compile_seconds
        Of which compiling Numba kernels (0 when they were already in the on-disk cache).
    functions
        Functions compiled (one per signature, nested ones included).
    """

    name: str
    seconds: float
    compile_seconds: float
    functions: int = field(default=0)


def _touchpoints_and_conversions(users: int = 12) -> tuple:
    import polars as pl

    tp: dict[str, list] = {"touchpoint_id": [], "anon_id": [], "occurred_at": [], "channel": []}
    cv: dict[str, list] = {"conversion_id": [], "anon_id": [], "occurred_at": [], "value_micros": []}
    for u in range(users):
        anon = f"a{u}"
        for k in range(1 + u % 5):
            tp["touchpoint_id"].append(f"t{u}-{k}")
            tp["anon_id"].append(anon)
            # users 3, 6, ...: two touches on the same microsecond (ordered by touchpoint_id)
            tp["occurred_at"].append(_T0 + timedelta(hours=u, minutes=0 if (u % 3 == 0 and k < 2) else 7 * k))
            tp["channel"].append(_CHANNELS[(u + k) % len(_CHANNELS)])
        cv["conversion_id"].append(f"c{u}")
        cv["anon_id"].append(anon if u % 4 else f"lonely{u}")  # every 4th conversion has no touchpoints
        cv["occurred_at"].append(_T0 + timedelta(hours=u, minutes=50))
        cv["value_micros"].append(1_000_000 * (1 + u))
    return pl.DataFrame(tp), pl.DataFrame(cv)


def _events(users: int = 12):
    import polars as pl

    rows: dict[str, list] = {
        "event_id": [],
        "anon_id": [],
        "occurred_at": [],
        "type": [],
        "utm_source": [],
        "utm_medium": [],
        "utm_campaign": [],
        "gclid": [],
        "url": [],
        "value_micros": [],
    }
    sources = (("google", "cpc", "brand", "g1"), ("newsletter", "email", "jan", None), (None, None, None, None))
    for u in range(users):
        for k in range(4):
            src, medium, campaign, gclid = sources[(u + k) % len(sources)]
            last = k == 3 and u % 2 == 0
            rows["event_id"].append(f"e{u}-{k}")
            rows["anon_id"].append(f"a{u}")
            rows["occurred_at"].append(_T0 + timedelta(hours=u, minutes=45 * k))  # a 45-minute gap: new session
            rows["type"].append("CONVERSION" if last else "PAGE_VIEW")
            rows["utm_source"].append(src)
            rows["utm_medium"].append(medium)
            rows["utm_campaign"].append(campaign)
            rows["gclid"].append(gclid if not last else None)
            rows["url"].append(f"https://example.com/p{k}?utm_source={src}" if src else "https://example.com/")
            rows["value_micros"].append(5_000_000 if last else None)
    return pl.DataFrame(rows)


def warm_up(*, data_driven: bool = False, on_stage: Callable[[str], None] | None = None) -> list[WarmupStage]:
    """Compile the Numba kernels of the engine's common paths into the on-disk cache.

    Runs on tiny inputs: :func:`~optiq_engine.attribute` with the six heuristic models (default rules,
    then path rules), :func:`~optiq_engine.build_journeys` and
    :func:`~optiq_engine.extract_touchpoints`, and with ``data_driven`` the data-driven models
    (``MARKOV`` orders 1 and 2, ``SHAPLEY``, ``DATA_DRIVEN``) fitted inside ``attribute()``.

    Parameters
    ----------
    data_driven
        Also compile the data-driven fits (a few seconds per model in a fresh environment).
    on_stage
        Called with each stage's name as it starts.

    Returns
    -------
    list of WarmupStage
        Each stage's seconds and its compilation; all zero compilation means the cache was already warm.

    Notes
    -----
    The cache lives beside the installed package's sources, or under ``NUMBA_CACHE_DIR``; with
    ``OPTIQ_NUMBA_CACHE=0`` nothing is cached and a warm-up only helps this process. Numba keys cache entries
    on the CPU it compiled for: a cache built on one machine is reused on another of the same CPU model
    (a different one recompiles, correctly, on first use).

    Examples
    --------
    >>> from optiq_engine.warmup import warm_up
    >>> [s.name for s in warm_up()]  # doctest: +SKIP
    ['attribute: heuristic models', 'attribute: path rules', 'journeys', 'touchpoints']
    """
    from .attribution import attribute
    from .journeys import build_journeys
    from .kernels._jit import compile_stats
    from .models import HEURISTIC_MODELS
    from .touchpoints import extract_touchpoints

    tp, cv = _touchpoints_and_conversions()
    events = _events()
    heuristic = list(HEURISTIC_MODELS)
    stages: list[tuple[str, Callable[[], object]]] = [
        ("attribute: heuristic models", lambda: attribute(tp, cv, models=heuristic)),
        (
            "attribute: path rules",
            lambda: attribute(
                tp,
                cv,
                models=heuristic,
                touch_rule="collapse_repeats",
                drop_direct="unless_all_direct",
                max_touchpoints=3,
            ),
        ),
        ("journeys", lambda: build_journeys(events)),
        ("touchpoints", lambda: extract_touchpoints(events)),
    ]
    if data_driven:
        stages += [
            ("data-driven: MARKOV", lambda: attribute(tp, cv, models=["MARKOV"])),
            ("data-driven: MARKOV order 2", lambda: attribute(tp, cv, models=[_markov(2)])),
            ("data-driven: SHAPLEY", lambda: attribute(tp, cv, models=["SHAPLEY"])),
            ("data-driven: DATA_DRIVEN", lambda: _data_driven(tp, cv)),
        ]
    done = []
    for name, run in stages:
        if on_stage is not None:
            on_stage(name)
        before, t0 = compile_stats(), time.perf_counter()
        with _quiet():
            run()
        after = compile_stats()
        done.append(
            WarmupStage(
                name=name,
                seconds=time.perf_counter() - t0,
                compile_seconds=after.seconds - before.seconds,
                functions=after.functions - before.functions,
            )
        )
    return done


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the library's warnings about the toy inputs (e.g. a data-driven fit's balance on 12 users);
    the compile notice of ``kernels._jit`` keeps its own level."""
    package = logging.getLogger("optiq_engine")
    level = package.level
    package.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        package.setLevel(level)


def _data_driven(tp, cv) -> None:
    """DATA_DRIVEN on the tiny inputs, and the Poisson thinning it applies only above ``SELECT_JOURNEYS``
    journeys (the same call as :func:`~optiq_engine.models.conversion.choose_candidates`)."""
    from .attribution import attribute
    from .kernels.bootstrap import poisson_counts
    from .models.conversion import _THINNING_REPLICATE

    table = attribute(tp, cv, models=["DATA_DRIVEN"]).fitted["DATA_DRIVEN"].paths
    poisson_counts(table.hashes, table.conversions * 0.5, table.nulls * 0.5, 0, _THINNING_REPLICATE)


def _markov(order: int):
    from .models import get_model

    return get_model("MARKOV")(order=order)  # type: ignore[call-arg]
