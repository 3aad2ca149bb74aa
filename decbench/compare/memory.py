"""Peak memory of one run: allocated device memory on CUDA; on CPU the process's resident set,
whose high-water mark Linux lets a process reset (/proc/self/clear_refs), so each run gets its
own peak. Where that is unavailable, the lifetime peak is reported and the delta is None."""

from __future__ import annotations

import re
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from decbench.jsonrecord import JsonRecord

MB = 1024 * 1024


def _status_kb(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _lifetime_peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB on Linux


@dataclass
class PeakMemory(JsonRecord):
    kind: str  # cuda_allocated | rss | rss_lifetime_peak
    peak_mb: float
    peak_delta_mb: float | None  # None where the peak cannot be reset per run


@dataclass
class MemoryProbe:
    device: torch.device
    kind: str = ""
    start_mb: float = 0.0
    reset: bool = False

    def __enter__(self) -> MemoryProbe:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "cuda_allocated"
            self.start_mb = torch.cuda.memory_allocated(self.device) / MB
            return self
        self.reset = _reset_rss_peak()
        rss = _status_kb("VmRSS")
        self.kind = "rss" if self.reset and rss is not None else "rss_lifetime_peak"
        self.start_mb = (rss or 0) / 1024
        return self

    def __exit__(self, *exc) -> None:
        return None

    def result(self) -> PeakMemory:
        """The peak during the run and its rise over the memory in use when the run started
        (model weights are in the latter)."""
        if self.kind == "cuda_allocated":
            peak = torch.cuda.max_memory_allocated(self.device) / MB
            return PeakMemory(self.kind, peak, peak - self.start_mb)
        hwm = _status_kb("VmHWM") if self.reset else None
        if hwm is None:
            return PeakMemory(self.kind, _lifetime_peak_mb(), None)
        peak = hwm / 1024
        return PeakMemory(self.kind, peak, max(0.0, peak - self.start_mb))
