"""Which way each figure is better: the one list the engine and both faces rank by.

``ddpm compare --rank``, the compare screen and study tables (:mod:`core.study`) all order by
it, so a figure can never be "best" low in one place and high in another. Free of torch.
"""

from __future__ import annotations

# Figures where a smaller value is better; every other figure (confident share, class
# accuracy and entropy, images per second) is better higher.
LOWER_IS_BETTER = frozenset({"fid", "kid", "kid_std", "curve_distance", "swd", "freq_w1", "amp_w1", "loss", "elapsed_s"})


def lower_is_better(name: str) -> bool:
    return name in LOWER_IS_BETTER


def direction(name: str) -> str:
    """``lower`` or ``higher``: how a table says which way its ranking goes."""
    return "lower" if lower_is_better(name) else "higher"
