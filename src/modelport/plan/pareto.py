"""The Pareto front over (latency, size, drop), the budget, and the pick: pure functions.

A *point* is any mapping with the keys ``latency_ms``, ``size_mb`` and ``drop`` (the drop of the
metric the budget applies to: accuracy, the user's metric, or 1 - mean cosine), lower is better
for all three. Nothing here measures or writes anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError

__all__ = [
    "OBJECTIVES",
    "Budget",
    "closest",
    "dominates",
    "pareto_front",
    "pick",
    "verdicts",
]

OBJECTIVES = ("latency_ms", "size_mb", "drop")

Point = Mapping[str, Any]


def dominates(a: Point, b: Point, keys: Sequence[str] = OBJECTIVES) -> bool:
    """``a`` is no worse than ``b`` in every objective and strictly better in one."""
    return all(a[k] <= b[k] for k in keys) and any(a[k] < b[k] for k in keys)


def pareto_front(points: Sequence[Point], keys: Sequence[str] = OBJECTIVES) -> list[int]:
    """Indices of the points no other point dominates, fastest first. Equal points are all kept."""
    front = [
        i
        for i, p in enumerate(points)
        if not any(dominates(q, p, keys) for j, q in enumerate(points) if j != i)
    ]
    return sorted(front, key=lambda i: tuple(points[i][k] for k in keys))


@dataclass(frozen=True)
class Budget:
    """What a result must meet. None: no limit on that objective.

    max_drop: the allowed drop of the budget metric (0.005 = half a percent / half a point).
    max_latency_ms: the allowed latency at the served batch size.
    max_size_mb: the allowed model size on disk, in MB (10^6 bytes).
    """

    max_drop: float | None = None
    max_latency_ms: float | None = None
    max_size_mb: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_drop", "max_latency_ms", "max_size_mb"):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise UsageError(f"{name}={v!r} must be a finite number or None")
            if v < 0 or (name != "max_drop" and v == 0):
                raise UsageError(f"{name}={v!r} must be {'>= 0' if name == 'max_drop' else '> 0'}")

    def limits(self) -> dict[str, float]:
        """Objective key -> limit, for the limits that are set."""
        pairs = (
            ("drop", self.max_drop),
            ("latency_ms", self.max_latency_ms),
            ("size_mb", self.max_size_mb),
        )
        return {k: float(v) for k, v in pairs if v is not None}

    def violations(self, p: Point) -> list[str]:
        """Why ``p`` misses the budget, one phrase per objective it misses; [] when it meets it."""
        units = {"drop": "", "latency_ms": " ms", "size_mb": " MB"}
        names = {"drop": "drop", "latency_ms": "latency", "size_mb": "size"}
        return [
            f"{names[k]} {p[k]:.4g}{units[k]} > {lim:.4g}{units[k]}"
            for k, lim in self.limits().items()
            if p[k] > lim + 1e-12
        ]

    def excess(self, p: Point) -> float:
        """How far ``p`` is outside the budget, summed over objectives relative to each limit
        (0 when it meets the budget). A drop limit of 0 counts excess in steps of 0.001."""
        total = 0.0
        for k, lim in self.limits().items():
            over = p[k] - lim
            if over > 1e-12:
                total += over / max(lim, 1e-3)
        return total


def pick(points: Sequence[Point], budget: Budget, tie_tolerance: float = 0.02) -> int | None:
    """The index of the best point that meets ``budget``; None when none does.

    Best = fastest. Points within ``tie_tolerance`` (a fraction) of the fastest are a tie that
    timing noise cannot settle; among them the smallest drop wins, then the smallest size, then
    the smallest ``tiebreak`` (optional key: a preference, e.g. 0 for default settings).
    """
    feasible = [i for i, p in enumerate(points) if not budget.violations(p)]
    if not feasible:
        return None
    fastest = min(points[i]["latency_ms"] for i in feasible)
    tied = [i for i in feasible if points[i]["latency_ms"] <= fastest * (1 + tie_tolerance)]
    return min(
        tied,
        key=lambda i: (
            points[i]["drop"],
            points[i]["size_mb"],
            points[i].get("tiebreak", 0),
            points[i]["latency_ms"],
            i,
        ),
    )


def closest(points: Sequence[Point], budget: Budget, n: int = 3) -> list[int]:
    """The ``n`` points nearest to meeting ``budget`` (smallest ``Budget.excess``), nearest first;
    ties go to the faster point."""
    order = sorted(
        range(len(points)), key=lambda i: (budget.excess(points[i]), points[i]["latency_ms"])
    )
    return order[:n]


def verdicts(
    points: Sequence[Point],
    budget: Budget,
    winner: int | None,
    front: Sequence[int],
    names: Sequence[str],
    tie_tolerance: float = 0.02,
) -> list[str]:
    """One sentence per point: why it won, or why it lost (outside the budget, dominated by
    another point, slower than the winner, or tied with it and lost on drop/size)."""
    out = []
    on_front = set(front)
    for i, p in enumerate(points):
        miss = budget.violations(p)
        if i == winner:
            others = [j for j, q in enumerate(points) if j != i and not budget.violations(q)]
            out.append(
                "WINNER: the fastest that meets the budget"
                + (f" (of {len(others) + 1} that do)" if others else " (the only one that does)")
            )
        elif miss:
            out.append("outside the budget: " + "; ".join(miss))
        elif i not in on_front:
            by = next(
                (names[j] for j in front if dominates(points[j], p)),
                next(
                    (names[j] for j in range(len(points)) if dominates(points[j], p)),
                    "another",
                ),
            )
            out.append(f"dominated by {by} (no better in latency, size or drop)")
        elif winner is not None:
            w = points[winner]
            ratio = p["latency_ms"] / w["latency_ms"] if w["latency_ms"] else math.inf
            if ratio <= 1 + tie_tolerance:
                out.append(
                    f"as fast as the winner within {tie_tolerance:.0%} (timing noise); "
                    "lost on drop or size"
                )
            else:
                out.append(f"meets the budget but {ratio:.2f}x the winner's latency")
        else:
            out.append("on the front")
    return out
