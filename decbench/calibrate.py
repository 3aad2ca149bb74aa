"""Entropy calibration: the next-token entropy over greedy runs on a suite, as quantiles, so that
the entropy-gated methods (cntp, adadec; decoders/gated.py) get a threshold that fires on a
known share of steps (the p90 fires on about 10% of greedy steps). AdaDec learns its threshold
per model; this measures the distribution it is learned from.

Each prompt's first turn runs greedy with the session's model, chat template and generation
limits; every step's entropy (bits, untempered, as the gate measures it) is collected.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch

from decbench.decoders.base import NoOptions, Request
from decbench.decoders.gated import UncertainStep, decode_gated
from decbench.errors import ConfigError
from decbench.run import Session
from decbench.settings import SamplingSettings
from decbench.suites.base import Suite

SCHEMA = "decbench/entropy-calibration/v1"
QUANTILES = (0.5, 0.75, 0.9, 0.95, 0.99)


@dataclass
class EntropyCalibration:
    model: str
    suite: str
    prompts: int
    steps: int  # greedy steps measured, over all prompts
    max_new_tokens: int
    mean: float  # bits
    quantiles: dict[str, float]  # "p90" -> bits
    by_category: dict[str, dict[str, float]]  # category -> {"steps", "p50", "p90"}
    schema: str = SCHEMA

    def to_dict(self) -> dict:
        data = asdict(self)
        return {"schema": data.pop("schema"), **data}


def greedy_entropies(session: Session, prompt: str) -> list[float]:
    """[steps] the entropy before each greedy token of `prompt`'s generation."""

    def never(step: UncertainStep) -> list[int]:  # threshold inf: the gate never fires
        raise AssertionError("the calibration gate fired")

    request = Request(
        prompt=prompt,
        prompt_ids=session.encode(prompt),
        generation=session.profile.generation,
        sampling=replace(SamplingSettings(), seed=session.profile.sampling.seed),
    )
    _, cost = decode_gated("calibrate", NoOptions(), session.target, request, math.inf, never)
    return cost.entropies


def quantiles(values: list[float], qs: tuple[float, ...] = QUANTILES) -> dict[str, float]:
    data = torch.tensor(values, dtype=torch.float64)
    return {f"p{round(q * 100)}": torch.quantile(data, q).item() for q in qs}


def calibrate_entropy(
    session: Session, suite: Suite, progress=lambda _msg: None
) -> EntropyCalibration:
    every: list[float] = []
    by_category: dict[str, list[float]] = {}
    for i, sample in enumerate(suite.samples):
        progress(f"[{i + 1}/{len(suite.samples)}] {sample.id}")
        values = greedy_entropies(session, sample.turns[0])
        every += values
        by_category.setdefault(sample.category, []).extend(values)
    if not every:
        raise ConfigError(
            "calibrate-entropy: no greedy steps to measure (an empty suite selection, "
            "or max_new_tokens = 0)"
        )
    return EntropyCalibration(
        model=session.target.name,
        suite=suite.name,
        prompts=len(suite.samples),
        steps=len(every),
        max_new_tokens=session.profile.generation.max_new_tokens,
        mean=sum(every) / len(every),
        quantiles=quantiles(every),
        by_category={
            name: {"steps": len(v), **quantiles(v, (0.5, 0.9))} for name, v in by_category.items()
        },
    )
