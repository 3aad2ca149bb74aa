"""`--kind eagle`: the EAGLE draft layer (Li et al., "EAGLE: Speculative Sampling Requires
Rethinking Feature Uncertainty", ICML 2024) trained on the cached features of the target's own
greedy continuations, as in the paper: a smooth-L1 regression to the next feature plus
CLS_WEIGHT times the cross-entropy to the target's next-token distribution, with uniform noise
on the input features so that the draft tolerates its own imperfect features when it chains.
The module and its storage are decbench.drafts.eagle."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional as F

from decbench.drafts.eagle import MARKER as EAGLE_MARKER
from decbench.drafts.eagle import EagleChain, EagleDraft, EagleShape, load_eagle, save_eagle
from decbench.drafts.stored import check_fits
from decbench.models import artifact_path
from decbench.train.data import Sequence
from decbench.train.heldout import Walk, walk_chains
from decbench.train.kinds import DraftKind, register_kind
from decbench.train.losses import make_batch

CLS_WEIGHT = 1.0  # token loss weight (the paper: 0.1; 1.0 did a little better here, see README)
NOISE = 0.2  # uniform noise amplitude on input features while training (features: std ~2)
GRAD_CLIP = 0.5  # gradient norm limit, as in the paper's training (without it lr 1e-3 diverged)


@register_kind
class EagleKind(DraftKind):
    name = "eagle"
    options = ("k", "unroll", "init")
    uses_states = True
    grad_clip = GRAD_CLIP
    marker = EAGLE_MARKER

    def __init__(self, config, target, sequences, states, subset) -> None:
        super().__init__(config, target, sequences, states, subset)
        weight = self.target.get_output_embeddings().weight
        if config.init:
            self.eagle, record = load_eagle(artifact_path(config.init))
            hidden, init_subset = self.eagle.shape.hidden, self.eagle.subset
            check_fits("--init", config.init, hidden, init_subset, record, config.target, weight)
            self.eagle.requires_grad_(True)
            self.subset = self.eagle.subset
        else:
            self.eagle = EagleDraft(EagleShape.of(self.target.config), subset)
        self.eagle.to(self.target.device)
        self.head_rows = self.eagle.rows(weight)
        self.embed = self.target.get_input_embeddings().weight
        self.trained = self.eagle

    def loss(self, picks: list[int], generator: torch.Generator) -> tuple[torch.Tensor, float]:
        """Whole rows (the draft attends over the prompt's features too), right-padded, each
        row's last `seq_len` tokens (make_batch) with their features from the cache. Only the
        rows decoding drafts from count: the last prompt token's and the continuation's."""
        assert self.states is not None
        rows = [self.sequences[i] for i in picks]
        ids, mask, starts = make_batch(rows, self.config.seq_len, self.pad)
        features = torch.zeros(*ids.shape, self.head_rows.shape[1])
        scored = torch.zeros(ids.shape[0], ids.shape[1] - 1, dtype=torch.bool)
        for row, (i, start) in enumerate(zip(picks, starts, strict=True)):
            n = int(mask[row].sum())
            features[row, :n] = self.states[i][start : start + n].float()
            scored[row, max(rows[row].prompt_len - start - 1, 0) :] = True
        device = self.head_rows.device
        return eagle_loss(
            self.eagle,
            self.embed,
            self.head_rows,
            ids.to(device),
            features.to(device),
            mask.to(device),
            generator,
            scored.to(device),
            self.config.unroll,
        )

    def walk(self, sequence: Sequence, state: torch.Tensor | None) -> Walk:
        """The draft's real incremental chain on the target's cached features."""
        assert state is not None
        truth, start = sequence.ids, sequence.prompt_len
        chain = EagleChain(self.eagle, self.embed, self.head_rows)
        features = state.to(self.head_rows.device, torch.float32)
        chain.extend(features[:start], truth[1 : start + 1])

        def accepted(c: int, a: int) -> None:
            after = truth[c + 1 : c + a + 2]  # short at the end: no bonus in the data
            chain.extend(features[c : c + len(after)], after)

        return Walk(walk_chains(truth, start, self.config.k, lambda c, k: chain.chain(k), accepted))

    def save(self, folder: Path, record: dict, tokenizer) -> None:
        save_eagle(self.eagle, folder, record)


def eagle_loss(
    draft: EagleDraft,
    embed: torch.Tensor,  # [vocab, hidden] the target's input embeddings
    rows: torch.Tensor,  # [v', hidden] the target's LM head rows the draft scores
    ids: torch.Tensor,  # [b, n] right-padded token ids
    features: torch.Tensor,  # [b, n, hidden] the target's features at those positions
    mask: torch.Tensor,  # [b, n] bool, real tokens
    generator: torch.Generator | None = None,
    scored: torch.Tensor | None = None,  # [b, n - 1] bool, the rows that count (default: all)
    unroll: int = 1,  # passes: pass s trains the (s+1)-th token of a chain
) -> tuple[torch.Tensor, float]:
    """(mean loss, fraction of scored rows where the draft's next-next token is the target's
    argmax over the draft's vocabulary, in the first pass).

    Pass 1 is the paper's: row i reads (f_i + noise, x_{i+1}) and learns f_{i+1}. With `unroll`
    > 1, pass s+1 replays the chain's later steps as decoding runs them (the "training-time
    test" of HASS, Zhang et al. 2024, and EAGLE-3, Li et al. 2025): row i reads pass s's own
    prediction for position i instead of f_i, sees the real rows up to i - s and the rows of
    passes 2..s+1 along its chain, and again learns f_{i+1}."""
    noise = torch.rand(features[:, :-1].shape, generator=generator).to(features.device)
    inputs = features[:, :-1] + (2 * noise - 1) * NOISE
    positions = torch.arange(ids.shape[1] - 1, device=ids.device)
    embeds = embed[ids[:, 1:]]
    want = features[:, 1:]
    target_logits = want @ rows.t()
    target_probs = target_logits.softmax(-1)
    valid = mask[:, 1:] if scored is None else mask[:, 1:] & scored
    total, first_hits = 0.0, 0.0
    for s, out in enumerate(chain_passes(draft, embeds, inputs, unroll)):
        rows_valid = valid & (positions >= s)  # pass s+1 needs s earlier rows
        regression = F.smooth_l1_loss(out, want, reduction="none").mean(-1)  # [b, n]
        draft_logits = out @ rows.t()
        tokens = -(target_probs * draft_logits.log_softmax(-1)).sum(-1)
        count = rows_valid.sum().clamp(min=1)
        total = total + ((regression + CLS_WEIGHT * tokens) * rows_valid).sum() / count
        if s == 0:
            hits = (draft_logits.argmax(-1) == target_logits.argmax(-1)) & rows_valid
            first_hits = hits.sum().item() / max(rows_valid.sum().item(), 1)
    return total / unroll, first_hits


def chain_passes(
    draft: EagleDraft,
    embeds: torch.Tensor,  # [b, n, hidden] embeddings of x_{i+1}
    features: torch.Tensor,  # [b, n, hidden] f_i
    passes: int,
) -> list[torch.Tensor]:
    """[passes] x [b, n, hidden]: pass s+1's row i is what chain step s+1 predicts after the real
    rows up to i - s, fed the true tokens (pass 1: the plain teacher-forced forward)."""
    n = embeds.shape[1]
    positions = torch.arange(n, device=embeds.device)
    out, past = draft(embeds, features, positions)
    outs = [out]
    for s in range(1, passes):  # row i continues the chain from its own prediction at i - 1
        shifted = torch.cat([torch.zeros_like(out[:, :1]), out[:, :-1]], 1)
        out, past = draft(embeds, shifted, positions, past, unroll_mask(s, n, embeds.device))
        outs.append(out)
    return outs


def unroll_mask(s: int, n: int, device: torch.device) -> torch.Tensor:
    """[n, (s + 1) n] bool for pass s+1 (s >= 1) over keys [pass 1 | pass 2 | ... | pass s+1]:
    row i sees pass 1's rows j <= i - s (the real features) and pass e+1's row i - s + e."""
    i = torch.arange(n, device=device)[:, None]
    j = torch.arange(n, device=device)[None, :]
    blocks = [j <= i - s] + [j == i - s + e for e in range(1, s + 1)]
    return torch.cat(blocks, 1)
