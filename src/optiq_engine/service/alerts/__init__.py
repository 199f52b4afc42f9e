"""Alert rules over the metrics: evaluation, scheduling across workers, and the alert lifecycle.

An evaluation reads the metrics a rule's config names (:mod:`optiq_engine.service.metrics`), decides
whether its condition holds, and writes the outcome in the same transaction that holds the rule's row
lock (``FOR UPDATE``), so two workers never evaluate one rule for one due time and a rule never has two
open events. The rules (``docs/service.md`` has the full text):

- **open** events are ``TRIGGERED`` or ``ACKNOWLEDGED``. While one is open, a firing condition opens
  nothing new; it may only escalate the open event's severity.
- **severity**: the rule's; ``CRITICAL`` when the breach is at least :data:`ESCALATION_FACTOR` times the
  rule's margin (spend >= 2x the threshold, a drop or spike >= 2x the configured percentage, ROAS below
  half of ``minRoas``, ``|z|`` >= 2x the anomaly threshold). ``CUSTOM`` rules do not escalate.
  Severity only ever goes up on an open event.
- **auto-resolve**: when the condition no longer holds, the open event becomes ``RESOLVED`` with
  ``resolvedBy`` null and ``context.autoResolved = true``. An evaluation that cannot decide (no data,
  too short a baseline) changes nothing.
- **dismissed** alerts stay quiet while their condition holds; once it has cleared
  (``context.clearedAt``), the next breach opens a new event. A manually resolved alert whose condition
  still holds fires again at the next evaluation.
- **notifications**: with ``notifyInApp``, every member of the organization gets an
  ``InAppNotification`` when an event opens, escalates or auto-resolves.
"""

from __future__ import annotations

from .checks import ESCALATION_FACTOR, Finding
from .evaluate import Evaluation, evaluate_due, evaluate_now, evaluate_rule
from .events import OPEN_STATUSES, acknowledge, dismiss, read_event, read_events, resolve
from .rules import create_rule, read_rule, read_rules

__all__ = [
    "ESCALATION_FACTOR",
    "OPEN_STATUSES",
    "Finding",
    "Evaluation",
    "evaluate_rule",
    "evaluate_due",
    "evaluate_now",
    "create_rule",
    "read_rules",
    "read_rule",
    "read_events",
    "read_event",
    "acknowledge",
    "resolve",
    "dismiss",
]
