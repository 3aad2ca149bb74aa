"""Per-phase wall-clock timers that synchronise the device before reading the clock."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# Phases whose work runs on the host only (constraint masks come from a CPU automaton): they read
# the clock without waiting for the device, so a constrained run does not pay two device syncs
# per committed token. Queued device work is charged to the next phase that synchronises.
HOST_PHASES = frozenset({"constraint"})


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so that a clock read measures finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class PhaseTimer:
    """Accumulates seconds per named phase (prefill, draft, verify, ...).

    `phase()` nests: time spent in an inner phase is not also charged to the outer one, so the
    phases always add up to at most the wall time.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.totals: dict[str, float] = defaultdict(float)
        self._stack: list[list[float]] = []  # per open phase: [start, child seconds]

    def reset(self) -> None:
        self.totals = defaultdict(float)
        self._stack = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        sync = name not in HOST_PHASES
        if sync:
            synchronize(self.device)
        frame = [time.perf_counter(), 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            if sync:
                synchronize(self.device)
            elapsed = time.perf_counter() - frame[0]
            self._stack.pop()
            self.totals[name] += elapsed - frame[1]
            if self._stack:
                self._stack[-1][1] += elapsed

    def snapshot(self) -> dict[str, float]:
        return dict(self.totals)
