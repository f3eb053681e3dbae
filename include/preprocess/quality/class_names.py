"""Probable typos among the class names: names that differ only by case, spaces or one character.

A labelling tool takes whatever string it is given, so ``WBc`` or ``red blood cell`` beside
``WBC`` or ``red_blood_cell`` becomes a class of its own with a handful of boxes. Two rules:

- names equal after case folding and removing spaces, ``_`` and ``-``: always a typo;
- names one edit apart (Damerau: one character inserted, removed, replaced, or two adjacent
  ones swapped): a typo only when the rarer name is rare (at most :data:`RARE_BOXES` boxes or
  :data:`RARE_SHARE` of the other's), since real classes can be that close (BCCD's ``RBC`` with
  4,155 boxes and ``WBC`` with 372). Close pairs that are not flagged are listed as similar names.

The boxes of the rarer name are the check's rows (dropping them leaves that class without
boxes; rename it in the labelling tool instead). A handful of class names needs no library:
the pairwise comparison is plain Python.
"""

from __future__ import annotations

import re
from itertools import combinations
from typing import TYPE_CHECKING

from include.preprocess.quality.checks import Check

if TYPE_CHECKING:
    import pandas as pd

RARE_BOXES = 5
RARE_SHARE = 0.01
_SEPARATORS = re.compile(r"[\s_\-]+")


def normalized(name: str) -> str:
    return _SEPARATORS.sub("", name).casefold()


def one_edit_apart(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by exactly one insertion, deletion, substitution or adjacent swap."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [k for k, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        return len(diff) == 1 or (
            len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
        )
    short, long_ = sorted((a, b), key=len)
    k = next((k for k, (x, y) in enumerate(zip(short, long_, strict=False)) if x != y), len(short))
    return short[k:] == long_[k + 1 :]


def _difference(a: str, b: str) -> str | None:
    """How two names differ, when that makes one a probable typo of the other."""
    if normalized(a) == normalized(b):
        return "case, spaces or separators"
    if one_edit_apart(a, b) or one_edit_apart(a.casefold(), b.casefold()):
        return "one character"
    return None


def typo_check(table: pd.DataFrame, classes: dict[int, str]) -> Check:
    """``class_name_typos``: the boxes of each rare name that is a probable typo of another.

    A name close to several others is named as the typo of the closest (case or spaces before
    one character), then the most frequent.
    """
    import numpy as np

    counts = np.bincount(table["class_id"].clip(lower=0), minlength=len(classes))
    check = Check("class_name_typos", {"python"}, evaluated=len(classes))
    similar, best = [], {}
    for (ka, a), (kb, b) in combinations(sorted(classes.items()), 2):
        how = _difference(a, b)
        if how is None:
            continue
        (rare_id, rare), (common_id, common) = sorted(((ka, a), (kb, b)), key=lambda p: (counts[p[0]], p[1]))
        pair = {
            "name": rare,
            "boxes": int(counts[rare_id]),
            "like": common,
            "like_boxes": int(counts[common_id]),
            "differs_by": how,
        }
        if how == "one character" and counts[rare_id] > max(RARE_BOXES, RARE_SHARE * counts[common_id]):
            similar.append(pair)
            continue
        rank = (how == "one character", -pair["like_boxes"])
        if rare_id not in best or rank < best[rare_id][0]:
            best[rare_id] = (rank, pair)
    for rare_id, (_, pair) in sorted(best.items()):
        positions = np.nonzero(table["class_id"].to_numpy() == rare_id)[0]
        reason = (
            f"class {pair['name']!r} ({pair['boxes']} boxes) differs from {pair['like']!r} ({pair['like_boxes']} "
            f"boxes) only by {pair['differs_by']}: a probable typo"
        )
        check.add_rows(table, positions, [reason] * len(positions))
    check.details = {"typos": [pair for _, pair in (best[k] for k in sorted(best))], "similar_names": similar}
    return check
