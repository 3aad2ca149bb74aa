"""The masked canvas and the decoding loop that every dllm-* decoder shares.

The canvas is the prompt followed by `max_new_tokens` generated positions, all masked at the
start, cut into semi-autoregressive blocks of `block_length` (the last one may be shorter). A
decoder repeatedly asks the denoiser for logits and unmasks some positions of the current block
(the first block that still has masks). Nothing is ever remasked, so a token is final once it is
placed: `DiffusionDecode` commits the contiguous run of placed tokens from the left to the shared
GenerationState after every step, which applies the stop rules (EOS, length, stop strings)
exactly as for autoregressive decoders, and stops the loop once they fire.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Request
from decbench.decoders.state import GenerationState
from decbench.diffusion.runner import DiffusionRunner
from decbench.results import CanvasTrace, GenerationResult


@dataclass
class Canvas:
    ids: torch.Tensor  # [1, prompt + gen] token ids, mask id where undecided
    prompt_len: int
    block_length: int
    mask_id: int

    @classmethod
    def new(cls, prompt: list[int], gen_len: int, block_length: int, mask_id: int) -> Canvas:
        ids = torch.tensor([list(prompt) + [mask_id] * gen_len])
        return cls(ids, len(prompt), block_length, mask_id)

    def copy(self) -> Canvas:
        return Canvas(self.ids.clone(), self.prompt_len, self.block_length, self.mask_id)

    @property
    def gen_len(self) -> int:
        return self.ids.shape[1] - self.prompt_len

    @property
    def generated(self) -> torch.Tensor:  # [gen]
        return self.ids[0, self.prompt_len :]

    @property
    def masked(self) -> torch.Tensor:  # [gen] bool
        return self.generated == self.mask_id

    @property
    def complete(self) -> bool:
        return not bool(self.masked.any())

    def current_block(self) -> int:
        """Index of the first block that still has a mask (the last block when complete)."""
        masked = self.masked.nonzero()
        first = int(masked[0, 0]) if len(masked) else self.gen_len - 1
        return first // self.block_length

    def block_range(self, block: int) -> tuple[int, int]:
        """[start, end) of a block, in generated-region coordinates."""
        start = block * self.block_length
        return start, min(start + self.block_length, self.gen_len)

    def block_mask(self) -> torch.Tensor:
        """[gen] bool: masked positions of the current block (the only ones a step may fill)."""
        start, end = self.block_range(self.current_block())
        allowed = torch.zeros(self.gen_len, dtype=torch.bool)
        allowed[start:end] = True
        return allowed & self.masked

    def place(self, positions: list[int], tokens: list[int]) -> None:
        index = torch.tensor(positions, dtype=torch.long) + self.prompt_len
        self.ids[0, index] = torch.tensor(tokens, dtype=self.ids.dtype)

    def final_run(self, start: int) -> list[int]:
        """Placed tokens from generated position `start` up to the first mask."""
        rest = self.generated[start:]
        masks = (rest == self.mask_id).nonzero()
        stop = int(masks[0, 0]) if len(masks) else len(rest)
        return rest[:stop].tolist()


# -- choosing what to unmask ---------------------------------------------------------------------
def confidence(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [gen, vocab] -> (probability of the argmax [gen], argmax token [gen])."""
    probs = torch.softmax(logits.float(), dim=-1)
    conf, tokens = probs.max(dim=-1)
    return conf, tokens


def most_confident(conf: torch.Tensor, allowed: torch.Tensor, n: int) -> list[int]:
    """The `n` allowed positions with the highest confidence, ties to the leftmost, sorted."""
    scores = torch.where(allowed, conf.double(), torch.tensor(-1.0, dtype=torch.double))
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    picked = [i for i in order[:n] if allowed[i]]
    return sorted(picked)


def static_step(canvas: Canvas, logits: torch.Tensor, k: int) -> tuple[list[int], list[int]]:
    """The reference step (LLaDA low-confidence remasking): unmask the k most confident masked
    positions of the current block, each with its argmax token. A function of the canvas and the
    logits only, which is what lets FreeDave verify drafted steps. logits: [gen, vocab]."""
    allowed = canvas.block_mask()
    conf, tokens = confidence(logits)
    positions = most_confident(conf, allowed, min(k, int(allowed.sum())))
    return positions, tokens[positions].tolist()


def above_threshold(
    conf: torch.Tensor,  # [gen] confidence of each position's argmax
    allowed: torch.Tensor,  # [gen] bool
    threshold: float,
) -> list[int]:
    """Fast-dLLM's rule: every allowed position with confidence > threshold; when none clears
    it, the single most confident one (so each step makes progress)."""
    chosen = (allowed & (conf > threshold)).nonzero().flatten().tolist()
    return chosen or most_confident(conf, allowed, 1)


# -- the shared loop -----------------------------------------------------------------------------
class DiffusionDecode:
    """One generation: canvas, denoiser counters, GenerationState and the step trace."""

    def __init__(
        self,
        method: str,
        params: object,
        target: ModelRunner,
        denoiser: DiffusionRunner,
        request: Request,
        block_length: int,
    ) -> None:
        self.state = GenerationState(method, params, target, request)
        self.denoiser = denoiser
        self.timer = target.timer
        denoiser.forward_calls = denoiser.rows = 0
        mask = denoiser.mask_token_id
        self.canvas = Canvas.new(request.prompt_ids, self.state.max_new, block_length, mask)
        self.committed = 0  # generated positions handed to the state
        self.unmasked = 0

    @property
    def done(self) -> bool:
        return self.state.done or self.canvas.complete or self.state.max_new == 0

    def would_finish(self, canvas: Canvas) -> bool:
        """Whether moving to `canvas` ends the generation by EOS, length or a full canvas (stop
        strings are only found on commit)."""
        run = canvas.final_run(self.committed)
        room = self.state.remaining
        return canvas.complete or len(run) >= room or any(t in self.state.eos for t in run)

    def denoise(self) -> torch.Tensor:
        """Full forward: logits [gen, vocab] for the generated region."""
        with self.timer.phase("denoise"):
            return self.denoiser.denoise(self.canvas.ids, self.canvas.prompt_len)[0]

    def apply(
        self,
        positions: list[int],
        tokens: list[int],
        block: int | None = None,
        batch: int = 1,
        reference_steps: int = 1,
    ) -> None:
        """Place tokens, commit the newly final run on the left, record one step."""
        block = self.canvas.current_block() if block is None else block
        self.canvas.place(positions, tokens)
        self.unmasked += len(positions)
        run = self.canvas.final_run(self.committed)
        self.committed += len(run)
        emitted = self.state.commit(run) if run else 0
        bonus = tokens[0] if tokens else -1
        self.state.record([], None, 0, bonus, False, emitted)
        trace = CanvasTrace(list(positions), list(tokens), block, batch, reference_steps)
        self.state.steps[-1].canvas = trace

    def result(self) -> GenerationResult:
        result = self.state.result()
        n = len(result.token_ids)
        calls = self.denoiser.forward_calls
        result.stats["dllm"] = {
            "forward_calls": calls,  # denoiser forwards (a batched forward counts once)
            "forward_rows": self.denoiser.rows,  # sequences forwarded, batch sizes summed
            "steps_per_token": calls / n if n else None,
            "tokens_per_step": n / calls if calls else None,
            "canvas_length": self.canvas.gen_len,
            "block_length": self.canvas.block_length,
            "unmasked": self.unmasked,  # canvas positions filled, incl. any after a stop
            "mask_token_id": self.canvas.mask_id,
        }
        return result
