"""PieceMasker: a line that arrives in pieces is masked as if it came whole (issue 11)."""

from __future__ import annotations

import itertools
import random
import re

from aicd.pipeline.variables import MASK, PieceMasker, masker


def _pieces(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(cuts), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def _merged(text: str) -> str:
    return re.sub(r"(\[MASKED\])+", "[MASKED]", text)


def test_every_cut_of_a_line_masks_as_the_whole_line() -> None:
    secrets = ["s3cr3t-value-1234", "another-secret", "cret-val"]
    whole = masker(secrets)
    rng = random.Random(11)
    for _ in range(300):
        parts = [rng.choice(["x", "ab ", *secrets]) for _ in range(rng.randint(1, 12))]
        text = "".join(parts)
        cuts = [rng.randint(0, len(text)) for _ in range(rng.randint(0, 4))]
        pieces = _pieces(text, cuts)
        stream = PieceMasker(secrets)
        shown = [stream.piece(p) for p in pieces[:-1]] + [stream.end(pieces[-1])]
        # The same text, but for two secrets meeting at a cut: each [MASKED] alone, not merged.
        assert _merged("".join(shown)) == whole(text), (text, cuts)
        assert not stream.holding


def test_without_secrets_nothing_is_held() -> None:
    stream = PieceMasker([])
    assert stream.piece("abc") == "abc" and not stream.holding
    assert stream.end("def") == "def"
    assert MASK == "[MASKED]"
