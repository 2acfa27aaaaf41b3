"""Latency percentiles from DDSketch, stored as sparse bins that merge by addition.

DDSketch (Masson et al., VLDB 2019) answers any quantile within a stated *relative*
accuracy: with accuracy 0.01 every p50/p95/p99 is within 1 % of the true value at that
rank. Its bins are counts indexed by ``ceil(log_gamma(value))``, so two sketches with the
same accuracy merge by adding counts per bin. That is how they are stored in Postgres:
``{"<bin key>": count, ..., "z": zero count}`` (jsonb), merged in SQL by
``analytics_merge_bins``. The accuracy fixes the bin layout: changing it needs the
analytics tables emptied (or old bins are read with the new layout).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ddsketch import DDSketch

ZERO_KEY = "z"
Bins = dict[str, float]


class LatencySketch:
    """Processing times (ms) in a DDSketch; build from values and/or stored bins."""

    def __init__(self, accuracy: float) -> None:
        self._sketch = DDSketch(relative_accuracy=accuracy)

    @property
    def count(self) -> float:
        return float(self._sketch.count)

    def add(self, value_ms: float) -> None:
        self._sketch.add(max(float(value_ms), 0.0))

    def add_all(self, values: Iterable[float]) -> LatencySketch:
        for v in values:
            self.add(v)
        return self

    def merge_bins(self, bins: Mapping[str, float] | None) -> LatencySketch:
        """Add stored bins to this sketch (what DDSketch.merge does, from the encoding)."""
        if not bins:
            return self
        sk = self._sketch
        for key, count in bins.items():
            c = float(count)
            if c <= 0:
                continue
            if key == ZERO_KEY:
                sk._zero_count += c
            else:
                sk._store.add(int(key), c)
            sk._count += c
        return self

    def to_bins(self) -> Bins:
        sk = self._sketch
        store = sk._store
        bins: Bins = {str(store.offset + i): float(c) for i, c in enumerate(store.bins) if c > 0}
        if sk._zero_count > 0:
            bins[ZERO_KEY] = float(sk._zero_count)
        return bins

    def quantile(self, q: float) -> float | None:
        """The value at quantile ``q`` (0..1), within the relative accuracy; None if empty."""
        if self._sketch.count <= 0:
            return None
        value = self._sketch.get_quantile_value(q)
        return None if value is None else float(value)


def merged(accuracy: float, many: Iterable[Mapping[str, float] | None]) -> LatencySketch:
    sketch = LatencySketch(accuracy)
    for bins in many:
        sketch.merge_bins(bins)
    return sketch


def add_bins(a: Mapping[str, float], b: Mapping[str, float]) -> Bins:
    """Bins of the union of two sketches (the Python twin of analytics_merge_bins)."""
    out: Bins = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) + float(v)
    return out
