"""Grid Beam Search: beam search under lexical constraints, phrases that must appear in the output.

Paper: Hokamp and Liu, "Lexically Constrained Decoding for Sequence Generation Using Grid Beam
Search", ACL 2017.

Each phrase of `include` is tokenised with the target's tokenizer into a token sequence (a
leading space is added by default, as words inside a sentence are spelled in BPE vocabularies);
C is the number of constraint tokens over all phrases. Hypotheses are kept in a grid of cells
indexed by how many constraint tokens they have placed (0..C), `beam` hypotheses per cell, and
every hypothesis of every cell advances in one batched target forward per step (the KV cache is
repeated and reordered on the batch as in decbench/decoders/beam.py). From a hypothesis:
- generate: the model's best tokens (the top 2·beam over its cell), staying in its cell; only
  an *open* hypothesis (not inside a phrase) may generate;
- start: an open hypothesis places the first token of a phrase it has not met, one cell up;
- continue: a hypothesis inside a phrase must place the phrase's next token, one cell up.
Scores are sums of log-probabilities whichever way a token came. Each cell keeps its best
`beam` candidates; only the top cell (all constraints met) may end at EOS, which then enters
the finished hypotheses, scored sum(log p) / length ** length_penalty; EOS is masked in the
other cells. A hypothesis that could no longer place its missing constraint tokens within
max_new_tokens is dropped, so some top-cell hypothesis always exists by the last step. The
search stops by beam search's rule (`width` finished hypotheses that no live one can beat at
its current length, or at once with `early_stopping`) or at max_new_tokens.

With no phrases the grid is one cell and the search is token-identical to `beam` with
width = beam, the same length penalty and stopping rule (tested), so beam = 1 is greedy.
Every output contains every phrase's tokens, unless a stop string cuts it first (stop strings
apply to the chosen hypothesis afterwards, as in `beam`); `stats["constraint"]` reports it.

LOSSY by nature: a constrained search returns the best sequence it finds that contains the
phrases, not greedy's output (which in general does not contain them). Deterministic:
temperature > 0 is refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from decbench.backends.capabilities import TORCH_MODEL
from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.beam import Hypotheses, run_search
from decbench.decoders.registry import register_decoder
from decbench.decoders.state import GenerationState
from decbench.errors import ConfigError
from decbench.metrics.constraint import search_summary
from decbench.options import option
from decbench.results import GenerationResult
from decbench.sampler import penalize
from decbench.settings import ConstraintSettings


@dataclass
class GridBeamOptions:
    include: list[str] = field(default_factory=list)  # phrases that must appear in the output
    beam: int = option(4, ge=1)  # hypotheses kept per grid cell
    length_penalty: float = 1.0  # finished score = sum log p / length ** length_penalty
    early_stopping: bool = False  # stop as soon as `beam` hypotheses have ended
    leading_space: bool = True  # tokenise " phrase" (mid-sentence spelling) unless it has one

    def validate(self) -> None:
        for i, phrase in enumerate(self.include):
            if not phrase.strip():
                raise ConfigError(f"method.include[{i}] is empty; every phrase needs a word")


@dataclass
class GridHyp:
    tokens: list[int]  # generated tokens
    origin: int  # row of the previous step's batch it extends
    total: float  # sum of log-probabilities
    met: frozenset[int]  # phrases placed in full
    inside: tuple[int, int] | None  # (phrase, tokens of it placed) while inside a phrase
    cell: int  # constraint tokens placed


@dataclass
class Candidate:
    total: float
    row: int  # live row it extends
    token: int
    phrase: int | None  # the phrase this token belongs to (None: generated freely)


def tokenize_phrases(target: ModelRunner, options: GridBeamOptions) -> list[list[int]]:
    """Each phrase as the target's token ids; refuses phrases that contain an EOS token."""
    if options.include and target.tokenizer is None:
        raise ConfigError("method.include needs the model's tokenizer; this model has none")
    phrases = []
    for i, text in enumerate(options.include):
        if options.leading_space and not text[:1].isspace():
            text = " " + text
        ids = list(target.tokenizer.encode(text, add_special_tokens=False))
        if not ids or set(ids) & set(target.eos_token_ids):
            raise ConfigError(f"method.include[{i}] = {text.strip()!r} tokenises to {ids}")
        phrases.append(ids)
    return phrases


def contains(tokens: list[int], phrase: list[int]) -> bool:
    n = len(phrase)
    return any(tokens[i : i + n] == phrase for i in range(len(tokens) - n + 1))


class GridSearch:
    """One search: the live grid (one flat list, the batch of the next forward), the finished
    hypotheses, and the bookkeeping counters."""

    def __init__(
        self, target: ModelRunner, options: GridBeamOptions, state: GenerationState, phrases
    ) -> None:
        self.target = target
        self.options = options
        self.state = state
        self.phrases: list[list[int]] = phrases  # [n_phrases][phrase length] token ids
        self.size = sum(len(p) for p in phrases)  # C: the top cell
        self.live = [GridHyp([], 0, 0.0, frozenset(), None, 0)]
        self.hypotheses = Hypotheses(options.beam, options.length_penalty)
        self.expanded = 0  # hypotheses run through the target, summed over steps

    def prefill(self) -> torch.Tensor:
        """Prompt at batch 1; returns [1, vocab] logits. The cache is widened on the first step."""
        ids = torch.tensor([self.state.request.prompt_ids])
        return self.target.prefill(ids).logits[:, -1]

    def log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [rows, vocab] -> running totals [rows, vocab] of every one-token extension."""
        prompt = self.state.request.prompt_ids
        contexts = [prompt + hyp.tokens for hyp in self.live]
        penalty = self.state.request.sampling.repetition_penalty
        logprobs = penalize(logits, contexts, penalty).log_softmax(-1)
        totals = torch.tensor([h.total for h in self.live], device=logprobs.device)[:, None]
        return totals + logprobs

    def generated(self, totals: torch.Tensor, cell: int) -> list[Candidate]:
        """The best 2·beam free extensions of the cell's open hypotheses, best first. EOS is
        masked below the top cell."""
        rows = [r for r, h in enumerate(self.live) if h.cell == cell and h.inside is None]
        if not rows:
            return []
        scores = totals[rows]  # [n_rows, vocab]
        if cell < self.size:
            scores = scores.clone()
            scores[:, sorted(self.state.eos)] = float("-inf")
        vocab = scores.shape[-1]
        values, flat = scores.flatten().topk(min(2 * self.options.beam, scores.numel()))
        out = []
        for total, index in zip(values.tolist(), flat.tolist(), strict=True):
            if total != float("-inf"):
                out.append(Candidate(total, rows[index // vocab], index % vocab, None))
        return out

    def constrained(self, totals: torch.Tensor) -> dict[int, list[Candidate]]:
        """Start and continue moves of every live hypothesis, by the cell they land in."""
        moves: list[tuple[int, int, int]] = []  # (row, phrase, token)
        for row, hyp in enumerate(self.live):
            if hyp.inside is not None:
                phrase, placed = hyp.inside
                moves.append((row, phrase, self.phrases[phrase][placed]))
                continue
            for phrase, ids in enumerate(self.phrases):
                if phrase not in hyp.met:
                    moves.append((row, phrase, ids[0]))
        if not moves:
            return {}
        rows, _, tokens = zip(*moves, strict=True)
        scores = totals[list(rows), list(tokens)].tolist()
        by_cell: dict[int, list[Candidate]] = {}
        for (row, phrase, token), total in zip(moves, scores, strict=True):
            cell = self.live[row].cell + 1
            by_cell.setdefault(cell, []).append(Candidate(total, row, token, phrase))
        return by_cell

    def child(self, cand: Candidate) -> GridHyp:
        parent = self.live[cand.row]
        tokens = [*parent.tokens, cand.token]
        if cand.phrase is None:
            return GridHyp(tokens, cand.row, cand.total, parent.met, None, parent.cell)
        placed = parent.inside[1] + 1 if parent.inside else 1
        met, inside = parent.met, (cand.phrase, placed)
        if placed == len(self.phrases[cand.phrase]):
            met, inside = met | {cand.phrase}, None
        return GridHyp(tokens, cand.row, cand.total, met, inside, parent.cell + 1)

    def expand(self, logits: torch.Tensor) -> list[GridHyp]:
        """One grid step (logits: [rows, vocab] for the live rows): fill every cell with its best
        `beam` extensions, best first within a cell, top cell first; EOS in the top cell among a
        cell's first `beam` candidates ends a hypothesis."""
        timer = self.target.timer
        totals = self.log_probs(logits)
        with timer.phase("constraint"):
            moves = self.constrained(totals)
        length = len(self.live[0].tokens) + 1  # every hypothesis has the same length
        room = self.state.max_new - length  # tokens left after this step
        beam = self.options.beam
        live: list[GridHyp] = []
        for cell in range(self.size, -1, -1):
            if self.size - cell > room:  # too far behind to place its phrases in time
                continue
            found = self.generated(totals, cell) + moves.get(cell, [])
            found.sort(key=lambda c: -c.total)  # stable: ties keep top-k order
            kept = 0
            for rank, cand in enumerate(found):
                if cand.token in self.state.eos and cand.phrase is None:
                    if rank < beam:
                        self.hypotheses.add([*self.live[cand.row].tokens, cand.token], cand.total)
                    continue
                live.append(self.child(cand))
                kept += 1
                if kept == beam:
                    break
        return live

    def finished(self, live: list[GridHyp]) -> bool:
        """Beam search's rule: no live hypothesis can still enter the finished ones."""
        if not live:
            return True
        if not self.hypotheses.full():
            return False
        if self.options.early_stopping:
            return True
        best = max(live, key=lambda h: h.total)
        return self.hypotheses.worst() >= self.hypotheses.score(best.total, len(best.tokens))

    def decode_step(self, live: list[GridHyp], first: bool) -> torch.Tensor:
        """Reorder the cache to the live rows' origins and run their last tokens."""
        if first:
            self.target.cache.batch_repeat_interleave(len(live))
        else:
            origins = torch.tensor([h.origin for h in live], device=self.target.device)
            self.target.cache.reorder_cache(origins)
        self.live = live
        self.expanded += len(live)
        ids = torch.tensor([[h.tokens[-1]] for h in live])  # [rows, 1]
        return self.target.forward(ids, all_logits=False).logits[:, -1]  # [rows, vocab]

    def best(self, live: list[GridHyp]) -> list[int]:
        for hyp in live:
            if hyp.cell == self.size:
                self.hypotheses.add(hyp.tokens, hyp.total)
        return self.hypotheses.best()


def constraint_stats(search: GridSearch, state: GenerationState, steps: int) -> dict:
    """What `stats["constraint"]` reports: the phrases found in the committed tokens and the
    time spent on the grid's constraint moves."""
    phrases = search.phrases
    found = sum(contains(state.generated, p) for p in phrases)
    seconds = state.timer.snapshot().get("constraint", 0.0)
    return {
        "kind": "include",
        "phrases": len(phrases),
        "constraint_tokens": search.size,
        "coverage": found / len(phrases) if phrases else 1.0,  # phrases in the output
        "satisfied": found == len(phrases),
        "hypotheses_expanded": search.expanded,  # rows run through the target after prefill
        "grid_steps": steps,
        "bookkeeping_s": seconds,  # start/continue moves of every hypothesis
        "bookkeeping_s_per_step": seconds / steps if steps else 0.0,
    }


def decode_grid_beam(
    method: str, options: GridBeamOptions, target: ModelRunner, request: Request
) -> GenerationResult:
    """beam's search loop (beam.run_search) over the grid's cells."""
    state = GenerationState(method, options, target, request)
    phrases = tokenize_phrases(target, options)
    needed = sum(len(p) for p in phrases)
    if needed > state.max_new:
        raise ConfigError(
            f"method.include: the phrases take {needed} tokens but at most {state.max_new} can "
            "be generated; raise generation.max_new_tokens or drop a phrase"
        )
    search = GridSearch(target, options, state, phrases)
    steps = run_search(search, state, target.timer)
    result = state.result()
    result.stats["constraint"] = constraint_stats(search, state, steps)
    result.constraint = search_summary(result, "include", "method.include", steps)
    return result


@register_decoder
class GridBeamDecoder(Decoder):
    spec = MethodSpec(
        requires=frozenset({TORCH_MODEL}),
        name="grid-beam",
        summary="Grid Beam Search: beam search whose outputs contain every `include` phrase",
        paper="Hokamp and Liu, Lexically Constrained Decoding for Sequence Generation Using "
        "Grid Beam Search, 2017",
        lossless=False,
        lossless_note=(
            "a constrained search: returns the best sequence found that contains the phrases, "
            "not greedy's; with no phrases it is token-identical to beam (beam = 1: greedy)"
        ),
        samples=False,
    )
    Options = GridBeamOptions

    @classmethod
    def takes_constraint(cls, options: GridBeamOptions, settings: ConstraintSettings):
        """[constraint] kind = "include" (or --include): its phrases become method.include."""
        if settings.kind != "include":
            return None
        return dataclasses.replace(options, include=list(settings.include))

    def generate(self, request: Request) -> GenerationResult:
        return decode_grid_beam(self.spec.name, self.options, self.target, request)
