"""How one attempt of a tile is priced.

A pool has a price per node-hour and a number of CPUs per node. A tile asks for one CPU slot, so
it is billed for the share of the node it held for its wall time: the farm pays for held
capacity, not for how hard the tile worked. CPU seconds are kept beside it as the efficiency
figure a producer compares against.
"""

from __future__ import annotations


def node_hours(wall_seconds: float, *, slots: float, cpus_per_node: int) -> float:
    """Node-hours held by an attempt that held ``slots`` CPUs for ``wall_seconds``."""
    return max(wall_seconds, 0.0) / 3600.0 * (slots / max(cpus_per_node, 1))


def attempt_cost(
    wall_seconds: float, *, slots: float, cpus_per_node: int, price_per_node_hour: float
) -> float:
    """Money for one attempt, in the pool's currency."""
    return node_hours(wall_seconds, slots=slots, cpus_per_node=cpus_per_node) * price_per_node_hour
