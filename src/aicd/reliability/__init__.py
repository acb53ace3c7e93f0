"""Reliability figures computed from recorded events only (docs/reliability.md).

`figures` (MTTF, MTTR, MTBF, availability, error budget) and `dora` (the four
keys, after fourkeys) are pure: they take `inputs.Incident` and
`inputs.Deployment` values and a `window.Window`, and know nothing of the store.
"""

from aicd.reliability.dora import DoraFigures, DoraKey, compute_dora
from aicd.reliability.figures import DEFAULT_SLO, ErrorBudget, ReliabilityFigures, compute_reliability
from aicd.reliability.humanize import format_duration, format_percent, format_rate
from aicd.reliability.inputs import Deployment, Incident
from aicd.reliability.window import Window, observe

__all__ = [
    "DEFAULT_SLO",
    "Deployment",
    "DoraFigures",
    "DoraKey",
    "ErrorBudget",
    "Incident",
    "ReliabilityFigures",
    "Window",
    "compute_dora",
    "compute_reliability",
    "format_duration",
    "format_percent",
    "format_rate",
    "observe",
]
