"""Parsing the feature set a run or an experiment names (``gray``, ``rgb``, ``patches:K``).

No pyspark here: the command line checks its arguments with this before Spark starts.
"""

from __future__ import annotations

from sparkvision.defaults import CENTROIDS


def parse_feature_set(features: str) -> tuple[str, int | None]:
    """``"gray"`` → ("gray", None); ``"patches"`` → ("patches", 1600); ``"patches:400"`` → ("patches", 400)."""
    kind, _, k = features.partition(":")
    if kind in ("gray", "rgb") and not k:
        return kind, None
    if kind == "patches":
        if not k:
            return kind, CENTROIDS
        if k.isdigit() and int(k) >= 2 and int(k) % 2 == 0:
            return kind, int(k)
        raise ValueError(f"features {features!r}: the number of centroids must be an even number ≥ 2, "
                         "e.g. patches:1600")
    raise ValueError(f"features {features!r}: choose gray, rgb, patches or patches:K")
