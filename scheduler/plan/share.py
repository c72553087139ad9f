"""Fair-share arithmetic: entitlements by weighted water-filling, and decayed usage.

Both are pure functions of numbers, shared by the planner, the dispatcher (which keeps usage)
and the policy simulator (which measures received against entitled).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from scheduler.plan.model import Quota


def entitlements(
    capacity: float, demand: Mapping[int, float], quotas: Mapping[int, Quota]
) -> dict[int, float]:
    """Each studio's fair share of one pool, in slots.

    A studio is entitled to ``clamp(lambda * weight, low, high)``, where ``low`` is its
    guarantee and ``high`` its ceiling, both capped by its demand (nobody is entitled to more
    than it asks for), and ``lambda`` is set so the shares add up to the capacity (or to the
    whole demand, when that is smaller). This is max-min fairness by weight with floors and
    ceilings, as Kueue and YuniKorn define guarantee / weight / ceiling. When the guarantees
    alone exceed the capacity, they are scaled down together.

    Args:
        capacity: slots of the pool.
        demand: slots each studio would use now (running plus ready), studios with none omitted.
        quotas: each studio's terms; missing ones are ``Quota()``.

    Returns:
        Slots per studio of ``demand``; they sum to ``min(capacity, sum of highs)``.
    """
    low: dict[int, float] = {}
    high: dict[int, float] = {}
    weight: dict[int, float] = {}
    for studio, wanted in demand.items():
        quota = quotas.get(studio, _DEFAULT)
        ceiling = math.inf if quota.ceiling is None else quota.ceiling
        high[studio] = max(0.0, min(float(wanted), ceiling))
        low[studio] = min(float(quota.guarantee), high[studio])
        weight[studio] = max(quota.weight, 1e-9)
    total_low = sum(low.values())
    if total_low >= capacity:
        scale = capacity / total_low if total_low > 0 else 0.0
        return {studio: value * scale for studio, value in low.items()}
    if sum(high.values()) <= capacity:
        return dict(high)
    lam = _water_level(capacity, low, high, weight)
    return {s: min(max(lam * weight[s], low[s]), high[s]) for s in demand}


def _water_level(
    capacity: float,
    low: Mapping[int, float],
    high: Mapping[int, float],
    weight: Mapping[int, float],
) -> float:
    """The ``lambda`` where ``sum(clamp(lambda * w, low, high)) == capacity``.

    The sum is piecewise linear and non-decreasing in ``lambda`` with breakpoints at
    ``low / w`` and ``high / w``: walk them in order and solve on the segment that crosses.
    """
    points = sorted({low[s] / weight[s] for s in low} | {high[s] / weight[s] for s in high})
    # Bisect for the first breakpoint where the fill reaches the capacity: log(n) fills of
    # O(n) each, not one per breakpoint (138 studios: 9 fills instead of 276).
    lo, hi = 0, len(points)
    while lo < hi:
        mid = (lo + hi) // 2
        if _filled(points[mid], low, high, weight) >= capacity:
            hi = mid
        else:
            lo = mid + 1
    if lo == len(points):
        return points[-1] if points else 0.0
    previous = points[lo - 1] if lo > 0 else 0.0
    return _solve_between(previous, points[lo], capacity, low, high, weight)


def _filled(
    lam: float, low: Mapping[int, float], high: Mapping[int, float], weight: Mapping[int, float]
) -> float:
    return sum(min(max(lam * weight[s], low[s]), high[s]) for s in low)


def _solve_between(
    a: float,
    b: float,
    capacity: float,
    low: Mapping[int, float],
    high: Mapping[int, float],
    weight: Mapping[int, float],
) -> float:
    """On ``[a, b]`` the fill is linear: ``fixed + lambda * slope``; solve for ``capacity``."""
    mid = (a + b) / 2
    fixed = 0.0
    slope = 0.0
    for s in low:
        share = mid * weight[s]
        if share <= low[s]:
            fixed += low[s]
        elif share >= high[s]:
            fixed += high[s]
        else:
            slope += weight[s]
    if slope == 0:
        return b
    return min(max((capacity - fixed) / slope, a), b)


def decayed_usage(usage: float, running: float, dt_s: float, half_life_s: float) -> float:
    """Usage after ``dt_s`` seconds in which ``running`` slots ran, with a half-life.

    The old usage halves every ``half_life_s``; the slot-seconds of the interval are added
    decayed as they accrue (the exact integral), so the result does not depend on how often
    the dispatcher ticks. At a steady ``running`` it tends to ``running * half_life_s / ln 2``.
    """
    if dt_s <= 0:
        return usage
    rate = math.log(2) / half_life_s
    kept = math.exp(-rate * dt_s)
    return usage * kept + running * (1.0 - kept) / rate


def steady_usage_s(half_life_s: float) -> float:
    """The usage one slot accrues when it runs forever: the planner's unit of "one slot"."""
    return half_life_s / math.log(2)


_DEFAULT = Quota()
