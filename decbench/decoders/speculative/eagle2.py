"""EAGLE-2 (Li et al., "EAGLE-2: Faster Inference of Language Models with Dynamic Draft Trees",
EMNLP 2024): the EAGLE draft layer (eagle.py, decbench.drafts.eagle) grows a tree shaped by its
own confidence instead of a chain.

Expand: the depth-1 candidates are the draft's top-k tokens after the last real row. At each
further depth, the `top_k` nodes of the previous depth with the highest cumulative draft
probability (the product of the draft's probabilities along the path: the paper's estimate of
the path's acceptance) are run through the draft layer together, in one forward under a tree
attention mask over the draft's own cache (a row sees the real rows, its ancestors and itself),
and each gets its own top-k children. Rerank: all candidates are sorted by cumulative
probability and the best `nodes` are verified by the target in one tree forward (tree.py). A
child never scores above its parent, so the best `nodes` always include every kept node's
ancestors.

After verification the draft's cache takes the target's own features along the accepted path
(the rows of the pending token and of each accepted node), exactly as the chain mode takes them
along its accepted prefix; the tree rows were drafted on a copy and leave nothing behind.

`nodes = "auto"` sizes the tree from the hardware (tree_size.py): it measures the target's
verify cost at a few tree sizes once per runner and, before every step, takes the size that
maximises expected tokens per second given the draft's acceptance observed so far.

Lossless: greedy accepts the longest path of exact matches. Under sampling the candidates are a
deterministic function of the context (top-k, never sampled), so the tree rule that needs no
draft probabilities (tree.accept_sampling: multi-candidate rejection of one-hot drafts,
SpecInfer) preserves the target's distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from decbench.backends import kernels
from decbench.backends.runner import ModelRunner
from decbench.decoders.base import MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative import tree, tree_size
from decbench.decoders.speculative.engine import PlannedDecoder, RowPlan
from decbench.decoders.speculative.proposer import Draft, Feedback, ProposerContext
from decbench.drafts.eagle import EagleChain, EagleDraft, load_eagle
from decbench.drafts.stored import check_fits
from decbench.options import option


@dataclass
class Eagle2Options:
    draft: str = "smollm2-135m-eagle"  # shipped alias or a folder from `decbench distill`
    top_k: int = option(4, ge=1)  # children per expanded node, and nodes expanded per depth
    depth: int = option(4, ge=1)  # tree depth (draft forwards per step: depth - 1)
    # tree nodes the target verifies, or "auto" (from the verify cost)
    nodes: int | str = option(8, ge=1, choices=("auto",))


@dataclass
class CandidateTree:
    """Every node the expansion produced, in creation order (a parent before its children)."""

    tokens: list[int] = field(default_factory=list)  # [c]
    parents: list[int] = field(default_factory=list)  # [c] -1 = the pending token
    scores: list[float] = field(default_factory=list)  # [c] log cumulative draft probability
    depths: list[int] = field(default_factory=list)  # [c] 1 = child of the pending token

    def add(self, token: int, parent: int, score: float) -> int:
        self.tokens.append(token)
        self.parents.append(parent)
        self.scores.append(score)
        self.depths.append(1 if parent == tree.ROOT else self.depths[parent] + 1)
        return len(self.tokens) - 1

    def best(self, nodes: int) -> Draft:
        """Rerank: the `nodes` candidates of highest cumulative probability, as a tree draft
        (creation order, so parents come first and siblings keep the draft's rank order)."""
        order = sorted(range(len(self.tokens)), key=lambda i: (-self.scores[i], self.depths[i], i))
        keep = sorted(order[:nodes])
        index = {old: new for new, old in enumerate(keep)}
        parents = [
            tree.ROOT if self.parents[i] == tree.ROOT else index[self.parents[i]] for i in keep
        ]
        return Draft([self.tokens[i] for i in keep], None, parents, ["eagle2"] * len(keep))


@torch.inference_mode()
def expand(chain: EagleChain, top_k: int, depth: int) -> CandidateTree:
    """Grow the candidate tree from the chain's last real row (see the module docstring). The
    chain's cache is read, never written: tree rows live in a local copy of the keys/values."""
    draft, rows, embed = chain.draft, chain.rows, chain.embed
    top_k = min(top_k, rows.shape[0])
    real = chain.length
    candidates = CandidateTree()
    logp = (chain.last @ rows.t()).float().log_softmax(-1)  # [v']
    top = logp.topk(top_k)
    for value, index in zip(
        top.values.tolist(), draft.token_ids(top.indices).tolist(), strict=True
    ):
        candidates.add(index, tree.ROOT, value)
    feature_of = {i: chain.last for i in range(len(candidates.tokens))}  # feature before node i
    past, row_of = chain.past, {}  # tree rows in `past` after the real ones: node -> row
    level = list(range(len(candidates.tokens)))
    for d in range(2, depth + 1):
        frontier = sorted(level, key=lambda i: -candidates.scores[i])[:top_k]
        f = len(frontier)
        seen = real + len(row_of)
        mask = torch.zeros(f, seen + f, dtype=torch.bool, device=embed.device)
        mask[:, :real] = True
        for r, node in enumerate(frontier):
            mask[r, seen + r] = True
            parent = candidates.parents[node]
            while parent != tree.ROOT:  # every ancestor was expanded, so it has a row
                mask[r, real + row_of[parent]] = True
                parent = candidates.parents[parent]
        ids = torch.tensor([candidates.tokens[i] for i in frontier], device=embed.device)
        feats = torch.stack([feature_of[i] for i in frontier])[None]  # [1, f, hidden]
        positions = torch.full((f,), real + d - 2, device=embed.device)
        out, past = draft(embed[ids][None], feats, positions, past, mask)
        for r, node in enumerate(frontier):
            row_of[node] = seen - real + r
        logp = (out[0] @ rows.t()).float().log_softmax(-1)  # [f, v']
        top = logp.topk(top_k, dim=-1)
        tokens = draft.token_ids(top.indices).tolist()
        level = []
        for r, node in enumerate(frontier):
            base = candidates.scores[node]
            for value, token in zip(top.values[r].tolist(), tokens[r], strict=True):
                child = candidates.add(token, node, base + value)
                feature_of[child] = out[0, r]
                level.append(child)
    return candidates


def accepted_features(feedback: Feedback) -> torch.Tensor | None:
    """[accepted + 1, hidden] the target's features at the pending token and at each accepted
    token, from a chain's or a tree's verify forward (rows of `feedback.hidden`)."""
    if feedback.hidden is None:
        return None
    if feedback.path is None:
        return feedback.hidden[: feedback.accepted + 1]
    rows = torch.tensor([0, *[1 + node for node in feedback.path]], device=feedback.hidden.device)
    return feedback.hidden[rows]


def feed_chain(chain: EagleChain, feedback: Feedback) -> None:
    """Append a draft row (f_i, x_{i+1}) for every position whose feature the target has now
    computed and the chain lacks: the accepted path of this forward (all prompt rows after the
    prefill)."""
    rows = accepted_features(feedback)
    if rows is None:
        return
    new = len(feedback.tokens) - 1 - chain.length  # rows the chain lacks
    rows = rows[len(rows) - new :] if new < len(rows) else rows
    chain.extend(rows, feedback.tokens[len(feedback.tokens) - len(rows) :])


class Eagle2Proposer:
    wants_hidden = True  # the engine passes the target's last hidden states in every feedback

    def __init__(self, chain: EagleChain, options: Eagle2Options, sizer: tree_size.TreeSizer):
        self.chain = chain
        self.options = options
        self.sizer = sizer

    def observe(self, feedback: Feedback) -> None:
        if feedback.draft is not None and feedback.draft.parents is not None:
            self.sizer.observe(feedback.draft, feedback.path or [])
        feed_chain(self.chain, feedback)

    def propose(self, ctx: ProposerContext) -> Draft:
        depth = min(self.options.depth, ctx.max_tokens)
        if self.chain.last is None or depth < 1 or self.chain.length != len(ctx.tokens) - 1:
            return Draft([])
        self.sizer.begin_draft()
        candidates = expand(self.chain, self.options.top_k, depth)
        return candidates.best(self.sizer.nodes(candidates.scores))


def load_chain_parts(
    target: ModelRunner, name: str
) -> tuple[EagleDraft, torch.Tensor, torch.Tensor, dict]:
    """(draft on the target's device, input embeddings [vocab, hidden], LM head rows the draft
    scores [v', hidden], the draft's record), checked against the target."""
    from decbench.models import artifact_path

    draft, record = load_eagle(artifact_path(name), target.model.dtype)
    embed = target.model.get_input_embeddings().weight.detach()  # [vocab, hidden]
    weight = target.model.get_output_embeddings().weight.detach()
    check_fits("method.draft", name, draft.shape.hidden, draft.subset, record, target.name, weight)
    draft = draft.to(target.device)
    if kernels.in_use(target.model) == "decbench":  # the draft decodes few rows at a time too
        kernels.install(draft)
    return draft, embed, draft.rows(weight).to(target.device), record


def largest_tree(top_k: int, depth: int) -> int:
    """How many candidates the expansion can produce (the most `auto` may keep)."""
    return min(top_k + (depth - 1) * top_k * top_k, tree_size.MAX_NODES)


@register_decoder
class Eagle2(PlannedDecoder):
    spec = MethodSpec(
        name="eagle2",
        summary="EAGLE's draft layer grows a dynamic tree by its own confidence; one tree verify",
        paper="Li et al., EAGLE-2: Faster Inference of Language Models with Dynamic Draft Trees "
        "(EMNLP 2024)",
        lossless=True,
        lossless_note="longest-path exact match under greedy; multi-candidate rejection sampling "
        "of one-hot (top-k, deterministic) drafts under sampling",
        supports_tree=True,
        drafts=True,
        constraints=True,
    )
    Options = Eagle2Options

    def __init__(self, target: ModelRunner, options: Eagle2Options, ctx) -> None:
        super().__init__(target, options, ctx)
        self.draft, self.embed, self.rows, self.record = load_chain_parts(target, options.draft)
        self.costs = tree_size.VerifyCosts(target) if options.nodes == "auto" else None

    def plan(self, request: Request, row: int = 0) -> RowPlan:
        chain = EagleChain(self.draft, self.embed, self.rows)
        sizer = tree_size.TreeSizer(self.options.nodes, self.costs, request.prompt_ids)
        sizer.start(largest_tree(self.options.top_k, self.options.depth))

        def report() -> dict:
            return {
                "vocab_subset": None if self.draft.subset is None else len(self.draft.subset),
                "draft_target": self.record.get("target"),
                "tree_size": sizer.report(),
            }

        return RowPlan(Eagle2Proposer(chain, self.options, sizer), report=report)
