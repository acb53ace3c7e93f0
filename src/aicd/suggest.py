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


class HintBudget:
    """`did_you_mean` over a bounded amount of work, for one pass over a file.

    A hint compares the name with every candidate, so a file with thousands of jobs and
    thousands of misspelt references would cost jobs x references. Each hint spends as many
    units as it has candidates; once `work` is spent, the errors are still reported, without a
    hint. Short candidate lists (keywords) cost little and keep their hints far longer.
    """

    def __init__(self, work: int = 200_000) -> None:
        self.left = work

    def __call__(self, name: str, candidates: Iterable[str]) -> str:
        names = candidates if isinstance(candidates, list | tuple) else list(candidates)
        if len(names) > self.left:
            return ""
        self.left -= len(names)
        return did_you_mean(name, names)
