"""DEL: a dynamic exit layer for self-speculative decoding (Zarch et al., "DEL: Context-Aware
Dynamic Exit Layer for Efficient Self-Speculative Decoding", 2025), with Kangaroo's early stop
of drafting (Liu et al., "Kangaroo: Lossless Self-Speculative Decoding via Double Early
Exiting", 2024).

The draft is the target's own first L layers, its final norm and its LM head (weights shared,
backends/derive.py). Which L, and how many tokens to draft, is chosen per context, training-free:
- Tracking: every `probe_every` steps, the verify forward also keeps the hidden states after each
  candidate exit layer (forward hooks on the shared layers); at the rows of the committed tokens
  each layer's greedy token, lm_head(norm(h_l)), is compared with the token the target produced.
  A decayed count gives each layer's acceptance rate alpha_l.
- Selection (DEL's tokens-per-layer): with N target layers, drafting gamma tokens at layer l
  costs gamma * l layers and verifying N; the expected tokens per step are
  (1 - alpha_l^(gamma+1)) / (1 - alpha_l). The (l, gamma) maximising their ratio wins; gamma = 0
  (a plain step, still probed) when no layer agrees often enough to pay for its drafts.
- Kangaroo's early stop: drafting stops once the draft's top-1 probability falls below
  `stop_below`, so a step never pays for drafts that are likely rejected.
LOSSLESS: the target verifies every draft (exact match under greedy, rejection sampling with the
draft's q under sampling); the exit layer only changes speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decbench.backends.derive import truncated_runner
from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative.draft_model import DraftModelOptions, DraftModelProposer
from decbench.decoders.speculative.engine import run_speculative
from decbench.decoders.speculative.proposer import Draft, Feedback, ProposerContext
from decbench.errors import ConfigError
from decbench.options import option
from decbench.results import GenerationResult


@dataclass
class DynamicExitOptions:
    exits: list[int] = option([], ge=1)  # candidate exit layers; [] = every N/8 up to 2N/3
    k_max: int = option(6, ge=1)  # longest draft per step
    # Kangaroo: stop drafting when the draft's top-1 prob is below this
    stop_below: float = option(0.5, ge=0, lt=1)
    probe_every: int = option(4, ge=1)  # steps between acceptance probes of every candidate layer
    # weight kept by older probe rows in each layer's acceptance rate
    decay: float = option(0.95, gt=0, le=1)


def default_exits(n_layers: int) -> list[int]:
    step = max(1, n_layers // 8)
    return [layer for layer in range(step, n_layers, step) if layer <= 2 * n_layers / 3] or [1]


def tokens_per_layer(alpha: float, gamma: int, exit_layer: int, n_layers: int) -> float:
    """DEL's objective: expected tokens per step over the layers the step computes."""
    alpha = min(alpha, 1 - 1e-6)
    expected = (1 - alpha ** (gamma + 1)) / (1 - alpha)
    return expected / (gamma * exit_layer + n_layers)


def choose_exit(alpha: dict[int, float], k_max: int, n_layers: int) -> tuple[int, int]:
    """The (exit layer, draft length) maximising tokens per layer; length 0 (a plain step,
    1 token for N layers) when no layer's drafts are worth their cost."""
    pairs = [(layer, gamma) for layer in alpha for gamma in range(0, k_max + 1)]
    return max(pairs, key=lambda lg: tokens_per_layer(alpha[lg[0]], lg[1], lg[0], n_layers))


class LayerProbe:
    """Forward hooks that keep the hidden state after each candidate exit layer while armed."""

    def __init__(self, target: ModelRunner, exits: list[int]) -> None:
        self.states: dict[int, torch.Tensor] = {}  # exit layer -> [1, rows, hidden]
        self.armed = False
        layers = target.model.model.layers
        self.handles = [layers[e - 1].register_forward_hook(self._keeper(e)) for e in exits]

    def _keeper(self, exit_layer: int):
        def keep(_module, _inputs, output) -> None:
            if self.armed:
                self.states[exit_layer] = output[0] if isinstance(output, tuple) else output

        return keep

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


class DynamicExitProposer:
    def __init__(self, target: ModelRunner, options: DynamicExitOptions, exits: list[int]) -> None:
        self.target = target
        self.options = options
        self.n_layers = len(target.model.model.layers)
        self.drafts: dict[int, DraftModelProposer] = {}
        self.seen = {e: 1.0 for e in exits}  # decayed probe rows (prior: one row at 1/2)
        self.matched = {e: 0.5 for e in exits}
        self.probe = LayerProbe(target, exits)
        self.steps = 0
        self.exit_layer, self.gamma = exits[0], 1

    def alpha(self) -> dict[int, float]:
        return {e: self.matched[e] / self.seen[e] for e in self.seen}

    def propose(self, ctx: ProposerContext) -> Draft:
        self.exit_layer, self.gamma = choose_exit(self.alpha(), self.options.k_max, self.n_layers)
        self.steps += 1
        self.probe.armed = self.steps % self.options.probe_every == 0  # catch the verify forward
        if self.gamma == 0:
            return Draft([])
        proposer = self.drafts.get(self.exit_layer)
        if proposer is None:
            options = DraftModelOptions(k=self.gamma, p_min=self.options.stop_below)
            runner = truncated_runner(self.target, self.exit_layer)
            proposer = self.drafts[self.exit_layer] = DraftModelProposer(runner, options)
        proposer.k = self.gamma
        return proposer.propose(ctx)

    def observe(self, feedback: Feedback) -> None:
        if self.probe.armed:
            self.probe.armed = False
            self._learn(feedback)
        self.probe.states.clear()

    @torch.inference_mode()
    def _learn(self, feedback: Feedback) -> None:
        """Compare each exit layer's greedy token with the target's at the committed rows."""
        rows = min(feedback.accepted + 1, len(feedback.tokens))
        produced = torch.tensor(feedback.tokens[-rows:])
        model = self.target.model
        for exit_layer, states in self.probe.states.items():
            hidden = model.model.norm(states[0, :rows])
            guesses = model.get_output_embeddings()(hidden).argmax(-1).cpu()
            matches = (guesses == produced).float()
            for match in matches.tolist():
                decay = self.options.decay
                self.seen[exit_layer] = decay * self.seen[exit_layer] + 1.0
                self.matched[exit_layer] = decay * self.matched[exit_layer] + match

    def close(self) -> None:
        self.probe.close()


@register_decoder
class DynamicExit(Decoder):
    spec = MethodSpec(
        name="del",
        summary="self-speculation from the target's first L layers; L and draft length picked "
        "per context from tracked per-layer acceptance; Kangaroo's confidence stop",
        paper=(
            "Zarch et al., DEL: Context-Aware Dynamic Exit Layer for Efficient Self-Speculative "
            "Decoding (2025); Liu et al., Kangaroo: Lossless Self-Speculative Decoding via "
            "Double Early Exiting (2024)"
        ),
        lossless=True,
        lossless_note="the target verifies every draft: exact match under greedy, rejection "
        "sampling with the exit layer's q under sampling",
        emits_draft_probs=True,
        drafts=True,
        constraints=True,
    )
    Options = DynamicExitOptions

    def __init__(self, target: ModelRunner, options: DynamicExitOptions, ctx) -> None:
        super().__init__(target, options, ctx)
        layers = getattr(getattr(target.model, "model", None), "layers", None)
        if layers is None:
            raise ConfigError(
                f"del needs a model with model.layers, not {type(target.model).__name__}"
            )
        n = len(layers)
        self.exits = sorted(set(options.exits)) if options.exits else default_exits(n)
        if not all(e < n for e in self.exits):  # needs the model: the declared range is >= 1
            raise ConfigError(f"method.exits must lie in 1..{n - 1}, got {options.exits}")

    def generate(self, request: Request) -> GenerationResult:
        proposer = DynamicExitProposer(self.target, self.options, self.exits)
        try:
            return run_speculative(self.spec.name, self.options, self.target, proposer, request)
        finally:
            proposer.close()
