"""Prometheus helpers every service may use."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram


class Children:
    """Cached ``metric.labels(...)`` children: looking a child up costs more than using it."""

    def __init__(self, metric: Counter | Histogram) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], object] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child
