"""'Did you mean ...?' hints for misspelt names."""

from __future__ import annotations

from collections.abc import Iterable


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like `name`, if one is close enough."""
    import difflib  # only when a name is wrong: not on the path of a valid pipeline

    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' (did you mean "x"?)' or '' — ready to append to a message."""
    best = closest(name, candidates)
    return f' (did you mean "{best}"?)' if best else ""
