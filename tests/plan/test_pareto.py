"""The Pareto front, the budget and the pick: pure functions on small hand-made points."""

from __future__ import annotations

import pytest

from modelport.errors import UsageError
from modelport.plan.pareto import Budget, closest, dominates, pareto_front, pick, verdicts


def pt(latency: float, size: float, drop: float) -> dict:
    return {"latency_ms": latency, "size_mb": size, "drop": drop}


POINTS = [
    pt(10.0, 90.0, 0.0),  # 0 fp32
    pt(6.0, 23.0, 0.007),  # 1 dynamic: fast, small, lossy
    pt(8.0, 40.0, 0.002),  # 2 partial: between
    pt(9.0, 45.0, 0.003),  # 3 dominated by 2
    pt(6.1, 23.0, 0.004),  # 4 tied with 1 within 2%, smaller drop
]


def test_dominates_needs_no_worse_everywhere_and_better_somewhere():
    assert dominates(POINTS[2], POINTS[3])
    assert not dominates(POINTS[3], POINTS[2])
    assert not dominates(POINTS[0], POINTS[1]) and not dominates(POINTS[1], POINTS[0])
    assert not dominates(POINTS[0], dict(POINTS[0]))  # equal points do not dominate


def test_front_keeps_the_non_dominated_fastest_first():
    assert pareto_front(POINTS) == [1, 4, 2, 0]
    assert 3 not in pareto_front(POINTS)
    assert pareto_front([pt(1, 1, 0), pt(1, 1, 0)]) == [0, 1]  # equal points are both kept
    assert pareto_front([]) == []


def test_budget_violations_and_excess():
    b = Budget(max_drop=0.005, max_latency_ms=7.0)
    assert b.violations(POINTS[4]) == []
    assert b.violations(POINTS[1]) == ["drop 0.007 > 0.005"]
    assert b.violations(POINTS[0]) == ["latency 10 ms > 7 ms"]
    assert b.excess(POINTS[4]) == 0.0
    assert b.excess(POINTS[1]) == pytest.approx(0.002 / 0.005)
    assert b.excess(POINTS[0]) == pytest.approx(3 / 7)
    assert Budget().violations(POINTS[3]) == []


@pytest.mark.parametrize(
    "kw", [{"max_drop": -0.1}, {"max_latency_ms": 0}, {"max_size_mb": float("nan")}]
)
def test_budget_rejects_bad_limits(kw):
    with pytest.raises(UsageError):
        Budget(**kw)


def test_pick_is_the_fastest_within_budget_and_ties_go_to_the_smaller_drop():
    assert pick(POINTS, Budget()) == 4  # 1 and 4 tie within 2%; 4 has the smaller drop
    assert pick(POINTS, Budget(), tie_tolerance=0.0) == 1
    assert pick(POINTS, Budget(max_drop=0.005)) == 4
    assert pick(POINTS, Budget(max_drop=0.003)) == 2
    assert pick(POINTS, Budget(max_drop=0.001)) == 0
    assert pick(POINTS, Budget(max_size_mb=30, max_drop=0.005)) == 4


def test_nothing_meets_the_budget_gives_none_and_the_closest():
    b = Budget(max_drop=0.001, max_latency_ms=7.0)
    assert pick(POINTS, b) is None
    near = closest(POINTS, b, n=2)
    assert len(near) == 2
    # 4: drop 0.003 over (3 units of 0.001); 0: 3 ms over 7 (0.43) -> fp32 is closest
    assert near[0] == 0
    assert closest(POINTS, b, n=10) == sorted(
        range(5), key=lambda i: (b.excess(POINTS[i]), POINTS[i]["latency_ms"])
    )


def test_verdicts_say_why_each_point_won_or_lost():
    b = Budget(max_drop=0.005)
    names = ["fp32", "dynamic", "partial", "other", "dynamic-t1"]
    front = pareto_front(POINTS)
    win = pick(POINTS, b)
    v = verdicts(POINTS, b, win, front, names)
    assert v[4].startswith("WINNER")
    assert v[1] == "outside the budget: drop 0.007 > 0.005"
    assert v[3].startswith("dominated by partial")
    assert "1.31x the winner's latency" in v[2]
    assert "x the winner's latency" in v[0]
    none = verdicts(POINTS, Budget(max_drop=0.0001), None, front, names)
    assert none[0] == "on the front"
    assert all(x.startswith("outside the budget") for x in none[1:3])


def test_ties_between_settings_of_one_model_go_to_the_preferred_setting():
    same = [
        {**pt(5.0, 23.0, 0.002), "tiebreak": 1},  # 1 thread: a hair faster
        {**pt(5.05, 23.0, 0.002), "tiebreak": 0},  # default settings
    ]
    assert pick(same, Budget()) == 1
    assert pick(same, Budget(), tie_tolerance=0.0) == 0
