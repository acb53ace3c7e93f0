"""Human forms of the figures: "45s", "12m 05s", "2h 05m", "3.2 d", "99.50%"."""

from __future__ import annotations

NONE = "-"


def format_duration(seconds: float | None, *, lower_bound: bool = False) -> str:
    """A duration rounded to the two units that matter; `lower_bound` prefixes "≥ "."""
    if seconds is None:
        return NONE
    prefix = "≥ " if lower_bound else ""
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    whole = round(seconds)
    if whole < 60:
        text = f"{whole}s"
    elif whole < 3600:
        text = f"{whole // 60}m {whole % 60:02d}s"
    elif round(seconds / 60) < 24 * 60:
        minutes = round(seconds / 60)
        text = f"{minutes // 60}h {minutes % 60:02d}m"
    else:
        text = f"{seconds / 86400:.1f} d"
    return f"{prefix}{sign}{text}"


def format_percent(fraction: float | None, *, digits: int = 2) -> str:
    """`fraction` (0..1) as a percentage: 0.995 -> "99.50%"."""
    if fraction is None:
        return NONE
    return f"{fraction * 100:.{digits}f}%"


def format_rate(per_day: float | None) -> str:
    """Deployments per day ("1064 deploys/day", "3.00 deploys/day"), or per week under one a day."""
    if per_day is None:
        return NONE
    if per_day >= 1 or per_day == 0:
        return f"{per_day:.0f} deploys/day" if per_day >= 100 else f"{per_day:.2f} deploys/day"
    return f"{per_day * 7:.2f} deploys/week"
