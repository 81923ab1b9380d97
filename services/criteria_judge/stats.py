"""Alignment stats: how well a criterion version's judge agrees with the human labels.

FAIL is the positive class (a criterion exists to catch failures): a true positive is a row both the
judge and the human failed. Only rows labeled PASS or FAIL that the judge gave a PASS or FAIL count;
SKIP, unlabeled and ERROR rows are left out, and labeled rows the version has not judged yet are
`pending`. A ratio whose denominator is 0 is absent (None), never 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class AlignmentStats:
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int
    pending: int
    labeled: int
    total: int

    @property
    def precision(self) -> float | None:
        judged_fail = self.true_positives + self.false_positives
        return self.true_positives / judged_fail if judged_fail else None

    @property
    def recall(self) -> float | None:
        human_fail = self.true_positives + self.false_negatives
        return self.true_positives / human_fail if human_fail else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None or p + r == 0:
            return None
        return 2 * p * r / (p + r)


def alignment_stats(pairs: Iterable[tuple[str | None, str | None]]) -> AlignmentStats:
    """Stats of (human label, judge verdict) pairs: label PASS/FAIL/SKIP/None, verdict PASS/FAIL/ERROR/None."""
    tp = fp = fn = tn = pending = labeled = total = 0
    for human, judge in pairs:
        total += 1
        if human not in ("PASS", "FAIL"):
            continue
        labeled += 1
        if judge is None:
            pending += 1
        elif judge == "FAIL":
            tp, fp = (tp + 1, fp) if human == "FAIL" else (tp, fp + 1)
        elif judge == "PASS":
            fn, tn = (fn + 1, tn) if human == "FAIL" else (fn, tn + 1)
    return AlignmentStats(tp, fp, fn, tn, pending, labeled, total)
