"""Robust outliers: median and MAD, not mean and standard deviation (one 200 ms stall inflates
a standard deviation enough to hide itself)."""

from __future__ import annotations

import numpy as np

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation


def outliers(values: np.ndarray, k: float = 6.0, min_ratio: float = 1.5) -> np.ndarray:
    """Indices of values above median + k * robust sigma and at least `min_ratio` x the median."""
    if len(values) < 10:
        return np.zeros(0, dtype=int)
    med = float(np.median(values))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(values - med))) or med * 0.01
    return np.nonzero((values > med + k * sigma) & (values > min_ratio * med))[0]


def merge_windows(windows: list[list[int]], gap_ns: int = 0) -> list[list[int]]:
    """Overlapping (or nearly touching) [start, end] windows merged, in time order."""
    out: list[list[int]] = []
    for start, end in sorted(windows):
        if out and start <= out[-1][1] + gap_ns:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out
