"""What one run computes and writes, decided under the organization's lock before any read (:class:`Plan`).

:func:`plan_run` reads the organization's settings, checks the options against each other and the scope,
and chooses a full or an incremental run; :func:`with_scope` then adds the users an incremental run
recomputes (from the change log) and the window every read uses.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from ..config import AttributionConfig
from ..errors import ConfigError
from ..io import postgres
from ..io.postgres import runs
from ..models.fitted import data_driven_names
from .settings import conversion_settings, settings_from_json

__all__ = ["Plan", "plan_run", "settings_fingerprint", "with_scope"]

log = logging.getLogger(__name__)

#: A stage's name, shown by ``optiq run`` (and a safe point to stop at: ``optiq_engine._interrupt``).
Stage = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    """One run of one organization: what it recomputes, with which models and options, and where it writes.

    ``models`` are the models asked for (the call's, else ``attributionSettings.models``; ``None``: the
    heuristics); ``model_names`` every model the run writes links of (each conversion type's included).
    ``window`` and ``changed`` are set by :func:`with_scope`: ``changed`` (incremental runs) holds each
    changed user (``anon_id``) and the earliest instant changed (``changed_from``).

    Made by :func:`plan_run`, completed by :func:`with_scope`.

    Parameters
    ----------
    run_id
        The ``EngineRun.id`` (``run_<uuid hex>``).
    organization_id, site_id
        The scope: an organization, or one of its tracking sites (``site_id``; None: every site).
    mode
        ``"FULL"`` or ``"INCREMENTAL"``.
    config
        The options: ``AttributionConfig()`` with ``attributionSettings`` and the call's options applied.
    models, model_names, by, per_name
        See above; ``per_name``: each conversion name's options (:func:`~optiq_engine.batch.conversion_settings`).
    partitions
        Slices the users are loaded in (Spark: the partition count).
    extract_touchpoints
        Whether the run builds the touchpoints from the tracking events (resolved: never None here).
    engine, master
        ``"local"`` or ``"spark"``, and Spark's master URL (None: ``local[*]``).
    since
        A full run's start: conversions from this instant on are recomputed (None: all).
    watermark, snapshot
        The run's transaction start and change-log snapshot (:func:`~optiq_engine.io.postgres.runs.start_snapshot`).
    previous
        The snapshot of the scope's last successful run, for an incremental run; None: a full run (also when
        that run computed with other options or models: :func:`settings_fingerprint`).
    fingerprint
        :func:`settings_fingerprint` of this run (stored in its summary).
    window, changed
        Set by :func:`with_scope` (default None).
    """

    run_id: str
    organization_id: str
    site_id: str | None
    mode: str
    config: AttributionConfig
    models: list[str] | None
    model_names: list[str]
    by: str | None
    per_name: dict[str, dict[str, Any]]
    partitions: int
    extract_touchpoints: bool
    engine: str
    master: str | None
    since: datetime | None
    watermark: datetime
    snapshot: str
    previous: str | None
    fingerprint: str | None = None
    window: postgres.Window | None = None
    changed: pl.DataFrame | None = None

    @property
    def stitched(self) -> bool:
        """Identity stitching: a person spans anon ids, so every run restitches them all."""
        return self.config.identity == "stitched"

    @property
    def anon_ids(self) -> tuple[str, ...] | None:
        """The users recomputed (``None``: every user in scope; ``()``: nothing changed)."""
        return None if self.window is None else self.window.anon_ids

    @property
    def everything(self) -> bool:
        """Whether the run recomputes every conversion of the organization (full, no ``since``, no site)."""
        return self.mode == "FULL" and self.since is None and self.site_id is None


def check_arguments(
    *, engine: str, extract_touchpoints: bool | None, partitions: int, full: bool, since: datetime | None
) -> None:
    """The options that contradict each other whatever the organization (before connecting)."""
    if engine not in ("local", "spark"):
        raise ConfigError(f"engine must be local or spark, got {engine!r}")
    if engine == "spark" and extract_touchpoints is True:
        raise ConfigError("extract_touchpoints is not supported with engine='spark' yet")
    if extract_touchpoints is True and partitions > 1:
        raise ConfigError("extract_touchpoints loads the events of all users in scope at once: use partitions=1")
    if since is not None and not full:
        raise ConfigError("since applies to full runs only (an incremental run recomputes whole user histories)")


def plan_run(
    conn: Any,
    *,
    organization_id: str,
    site_id: str | None,
    full: bool,
    since: datetime | None,
    models: Sequence[str] | None,
    partitions: int,
    extract_touchpoints: bool | None,
    engine: str,
    master: str | None,
    by: str | None,
    options: dict[str, Any],
) -> Plan:
    """The run's :class:`Plan`, on the connection holding the organization's lock (:func:`runs.run_lock`).

    The call's ``models``, ``by`` and ``options`` override ``attributionSettings``. Marks runs left RUNNING
    by a process that is gone as ABANDONED. Raises :class:`ConfigError` for an unknown organization or
    site and for options that this organization's data or settings rule out.

    Parameters
    ----------
    conn
        The psycopg connection holding the organization's lock.
    organization_id, site_id
        The scope (``site_id`` None: every site of the organization).
    full
        Recompute every user; otherwise an incremental run when a previous snapshot allows it.
    since
        With ``full``: recompute the conversions from this instant on (ignored otherwise).
    models
        Model names; empty or None: ``attributionSettings.models`` (None there: the heuristics).
    partitions, extract_touchpoints, engine, master, by
        As :func:`~optiq_engine.batch.run_batch` (``extract_touchpoints`` None: decided from the
        organization's data and last run).
    options
        ``AttributionConfig`` fields, over ``attributionSettings``.

    Returns
    -------
    Plan
        Without its scope (``window``; :func:`with_scope` adds it). Data-driven models, identity stitching
        and ``full`` make a full run.

    Raises
    ------
    ConfigError
        No such organization; a site not of it; invalid settings or options; ``by`` or stitching with
        ``engine="spark"``; data-driven models or stitching with ``partitions > 1``; extraction required (by
        the organization's data) with ``partitions > 1`` or Spark.
    ModelError
        An unknown model name (in the call or the settings).
    """
    settings = runs.read_settings(conn, organization_id)
    settings_options, settings_models = settings_from_json(settings)
    settings_by, per_name = conversion_settings(settings)
    runs.check_site(conn, organization_id, site_id)
    runs.mark_abandoned(conn, organization_id)
    if extract_touchpoints is None:
        extract_touchpoints = _extract_by_default(conn, organization_id, site_id, partitions=partitions, engine=engine)
    config = AttributionConfig().with_options(**{**settings_options, **options})
    chosen = list(models) if models else settings_models
    by = by or settings_by  # credit per conversion type (docs/attribution.md "Conversion types")
    if by is not None and engine == "spark":
        raise ConfigError("credit per conversion type (by='name') runs with engine='local' only")
    model_names = _all_model_names(chosen, config, by, per_name)
    watermark, snapshot = runs.start_snapshot(conn)  # before any read: the next incremental run reads past it
    # Data-driven models are fitted on every journey of the window: they need a full run in one part.
    data_driven = data_driven_names(model_names, config)
    if data_driven and partitions > 1 and engine == "local":
        raise ConfigError(f"{', '.join(data_driven)} fit on all users at once: run them with partitions=1")
    stitched = config.identity == "stitched"
    if stitched:
        _check_stitching(partitions, engine)
    fingerprint = settings_fingerprint(config, model_names, by, per_name)
    scope = (conn, organization_id, site_id)
    previous = None if full or data_driven or stitched else _incremental_base(*scope, fingerprint, extract_touchpoints)
    return Plan(
        run_id=f"run_{uuid.uuid4().hex}",
        organization_id=organization_id,
        site_id=site_id,
        mode="INCREMENTAL" if previous is not None else "FULL",
        config=config,
        models=chosen,
        model_names=model_names,
        by=by,
        per_name=per_name,
        partitions=partitions,
        extract_touchpoints=extract_touchpoints,
        engine=engine,
        master=master,
        since=since if full else None,
        watermark=watermark,
        snapshot=snapshot,
        previous=previous,
        fingerprint=fingerprint,
    )


def _incremental_base(
    conn: Any, organization_id: str, site_id: str | None, fingerprint: str, extract_touchpoints: bool
) -> str | None:
    """The snapshot an incremental run reads the change log past, or None: run in full (no earlier run, other
    options or models than its, or campaigns created since it while touchpoints are extracted)."""
    previous = runs.previous_snapshot(conn, organization_id, site_id)
    if previous is not None and runs.previous_fingerprint(conn, organization_id, site_id) != fingerprint:
        log.warning("the options or models differ from the last run's: this run recomputes every user")
        return None  # the unchanged users' links were computed with the old ones
    if previous is not None and extract_touchpoints and runs.campaigns_changed(conn, organization_id, site_id):
        log.warning("campaigns or ads were created since the last run: this run re-extracts every user's touchpoints")
        return None  # a click extracted before its campaign was synced resolves to it now
    return previous


def settings_fingerprint(
    config: AttributionConfig, model_names: Sequence[str], by: str | None, per_name: dict[str, dict[str, Any]]
) -> str:
    """A digest of what a run computes with: the options (``attributionSettings`` and the call's), every
    model's name and each conversion type's options. Equal digests: an incremental run may keep the links of
    the users that did not change; different ones: it recomputes every user.

    Parameters
    ----------
    config, model_names, by, per_name
        As :class:`Plan`'s fields.

    Returns
    -------
    str
        16 hex digits (SHA-256 of the fields' ``repr``: the frozen config's and the sorted rest).
    """
    types = sorted((name, sorted(options.items())) for name, options in per_name.items())
    text = repr((config, config.channel_rules, sorted(model_names), by, types))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def with_scope(conn: Any, plan: Plan, stage: Stage) -> Plan:
    """``plan`` with its window (and, incremental, the changed users read from the change log).

    Parameters
    ----------
    conn
        The psycopg connection holding the organization's lock.
    plan
        A plan from :func:`plan_run`.
    stage
        Called with ``"finding changed users"`` before the change log is read (incremental runs).

    Returns
    -------
    Plan
        ``plan`` with ``window`` (the scope, since and the longest lookback of every conversion type; the
        changed users' ``anon_ids`` when incremental) and ``changed``.
    """
    changed = None
    if plan.previous is not None:
        stage("finding changed users")
        changed = runs.changed_users(conn, plan.organization_id, plan.site_id, plan.previous)
    window = postgres.Window(
        organization_id=plan.organization_id,
        site_id=plan.site_id,
        start=plan.since,
        lookback=_longest_lookback(plan.config, plan.models, plan.by, plan.per_name),
        anon_ids=None if changed is None else tuple(changed.get_column("anon_id").to_list()),
    )
    return replace(plan, window=window, changed=changed)


def _longest_lookback(
    config: AttributionConfig, models: Sequence[str] | None, by: str | None, per_name: Any
) -> timedelta:
    """The lookback the reads must cover: the longest of every conversion type's (a type's may be longer)."""
    from ..conversion_types import type_configs

    types = type_configs(config, models, per_name).values() if by is not None else ()
    return max([config.lookback, *(cfg.lookback for cfg, _ in types)])


def _all_model_names(
    models: Sequence[str] | None, config: AttributionConfig, by: str | None, per_name: Any
) -> list[str]:
    """The names of the models of every conversion type (the call's, then each type's new ones)."""
    from ..conversion_types import type_configs
    from ..models import HEURISTIC_MODELS
    from ..models.base import resolve_models

    names = [m.name for m in resolve_models(models, config, default=HEURISTIC_MODELS)]
    if by is not None:
        for cfg, type_models in type_configs(config, models, per_name).values():
            names += [m.name for m in resolve_models(type_models, cfg, default=HEURISTIC_MODELS) if m.name not in names]
    return names


def _check_stitching(partitions: int, engine: str) -> None:
    """Identity stitching reads every user of the organization at once (a person's anon ids are never split)."""
    if engine != "local":
        raise ConfigError("identity='stitched' runs with engine='local' only (docs/contract.md §1.5)")
    if partitions > 1:
        raise ConfigError("identity='stitched' joins anon ids of any slice into one person: run it with partitions=1")


def _extract_by_default(conn: Any, organization_id: str, site_id: str | None, *, partitions: int, engine: str) -> bool:
    """Whether a run without an explicit choice extracts touchpoints (docs/touchpoints.md §6): yes when the
    organization's last successful run did (its engine rows are then kept up to date), or when the scope
    has tracking events and no ``TouchPoint`` row at all (there is nothing else to attribute to)."""
    extract = runs.extracted_last_time(conn, organization_id) or runs.scope_has_only_events(
        conn, organization_id, site_id
    )
    if extract and (partitions > 1 or engine != "local"):
        raise ConfigError(
            f"organization {organization_id!r} gets its touchpoints extracted from its tracking events (it has "
            "no TouchPoint rows, or its last run extracted them: docs/touchpoints.md §6), which needs "
            "--partitions 1 and --engine local; or pass --no-extract-touchpoints to read TouchPoint rows only"
        )
    return extract
