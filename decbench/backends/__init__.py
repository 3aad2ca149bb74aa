"""Backends: load a model onto a device and drive it step by step (see runner.ModelRunner)."""

from decbench.backends.runner import ForwardOutput, ModelRunner
from decbench.backends.timing import PhaseTimer

__all__ = ["ForwardOutput", "ModelRunner", "PhaseTimer"]
