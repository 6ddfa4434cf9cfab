"""The noise of an accuracy: the one standard-error formula every benchmark report uses."""
from __future__ import annotations

import math


def se(p: float, n: int) -> float:
    """Standard error sqrt(p(1-p)/n) of a proportion p measured on n prompts."""
    return math.sqrt(max(p * (1 - p), 0.0) / n)


def combined_se(*ses: float) -> float:
    """Standard error of a sum or difference of independent measurements."""
    return math.sqrt(sum(x * x for x in ses))
