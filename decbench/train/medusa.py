"""`--kind medusa`: K heads on the target's cached last hidden states, each trained with forward
KL to the target's distribution k+1 positions ahead (Cai et al., 2024). The module and its
storage are decbench.drafts.medusa."""

from __future__ import annotations

import itertools
from pathlib import Path

import torch

from decbench.drafts import medusa
from decbench.train.data import Sequence
from decbench.train.heldout import Walk, head_hits, walk_chains
from decbench.train.kinds import DraftKind, register_kind
from decbench.train.losses import soft_cross_entropy


@register_kind
class MedusaKind(DraftKind):
    name = "medusa"
    options = ("heads",)
    uses_states = True
    marker = medusa.MARKER

    def __init__(self, config, target, sequences, states, subset) -> None:
        super().__init__(config, target, sequences, states, subset)
        self.heads = medusa.MedusaHeads(self.target.config.hidden_size, config.heads, subset)
        self.head_rows = self.heads.rows(self.target.get_output_embeddings().weight)
        self.trained = self.heads

    def loss(self, picks: list[int], generator: torch.Generator) -> tuple[torch.Tensor, float]:
        """The batch's rows packed from the last prompt token on (where decoding drafts from).
        Head k at t learns the target's distribution at t+k+1 over the heads' vocabulary, while
        the token it predicts (t+k+2) is in the data: a greedy continuation, so that token is
        the target's argmax there."""
        assert self.states is not None
        parts, truth, starts = [], [], [0]
        for i in picks:
            seq = self.sequences[i]
            first = seq.prompt_len - 1
            end = min(len(seq.ids), first + self.config.seq_len)
            parts.append(self.states[i][first:end])
            truth += seq.ids[first:end]
            starts.append(starts[-1] + len(parts[-1]))
        device = self.head_rows.device
        hidden = torch.cat(parts).to(device, torch.float32)  # [T, hidden]
        truth_ids = torch.tensor(truth, device=device)  # [T]
        target_logits = hidden @ self.head_rows.t()  # [T, v'] the target's, over the subset
        head_logits = self.heads(hidden, self.head_rows)  # [T, heads, v']
        losses, hits = [], []
        for k in range(self.config.heads):
            shift = k + 1
            at = torch.cat(  # [T_k] positions whose token t+k+2 is in the same row
                [torch.arange(a, max(a, b - shift - 1)) for a, b in itertools.pairwise(starts)]
            ).to(device)
            q = head_logits[at, k]  # [T_k, v']
            losses.append(soft_cross_entropy(q, target_logits[at + shift]))
            hits.append(self.heads.token_ids(q.argmax(-1)) == truth_ids[at + shift + 1])
        all_losses, all_hits = torch.cat(losses), torch.cat(hits)
        return all_losses.sum() / max(len(all_losses), 1), all_hits.sum().item() / max(
            len(all_hits), 1
        )

    def walk(self, sequence: Sequence, state: torch.Tensor | None) -> Walk:
        assert state is not None
        truth = sequence.ids
        hidden = state.to(self.head_rows.device, torch.float32)  # [n, hidden]
        head = self.heads(hidden, self.head_rows)  # [n, heads, v']
        hits, counts = head_hits(head, truth, sequence.prompt_len - 1, self.heads.token_ids)
        preds = self.heads.token_ids(head.argmax(-1)).tolist()  # [n][heads]
        # drafts at pending position c come from the hidden state at c - 1
        steps = walk_chains(
            truth, sequence.prompt_len, self.config.heads, lambda c, k: preds[c - 1]
        )
        return Walk(steps, hits, counts)

    def save(self, folder: Path, record: dict, tokenizer) -> None:
        medusa.save_heads(self.heads, folder, record)
