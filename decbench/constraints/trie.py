"""The `allow` constraint: output exactly one sequence of an allow-list, through a vectorised
trie (Su et al., "STATIC: Sparse Transition-Accelerated Constrained Decoding", 2025).

The prefix trie of the allowed token sequences is stored as a sparse transition matrix in CSR
form: row s lists the tokens that may follow trie node s (`indices`, sorted) and the node each
one leads to (`next_state`). A mask is one slice of `indices` scattered into a boolean vector;
the masks of many nodes at once (every position of a draft) are one gather and one scatter. No
Python trie walk happens while decoding: a node is an int, so a state is a list of ints and
forking or rolling one back costs nothing.

EOS is allowed at nodes that end an allowed sequence (`terminal`); a node with no children and
`terminal` set means the generation must stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from decbench.constraints.base import Constraint, ConstraintState, ConstraintViolation
from decbench.errors import ConfigError


@dataclass(frozen=True)
class CsrTrie:
    indptr: torch.Tensor  # [n_nodes + 1] long: row s spans indices[indptr[s]:indptr[s+1]]
    indices: torch.Tensor  # [n_edges] long: the token on each edge, sorted within a row
    next_state: torch.Tensor  # [n_edges] long: the node each edge leads to
    terminal: torch.Tensor  # [n_nodes] bool: an allowed sequence ends at this node
    vocab: int  # mask width (the model's logits width)

    @property
    def n_nodes(self) -> int:
        return self.terminal.shape[0]


def build_trie(sequences: Sequence[Sequence[int]], vocab: int) -> CsrTrie:
    """The CSR trie of `sequences` (ids in [0, vocab)); built once, in Python, at compile time."""
    children: list[dict[int, int]] = [{}]
    terminal = [False]
    for sequence in sequences:
        node = 0
        for token in sequence:
            nxt = children[node].get(token)
            if nxt is None:
                nxt = len(children)
                children[node][token] = nxt
                children.append({})
                terminal.append(False)
            node = nxt
        terminal[node] = True
    indptr, indices, next_state = [0], [], []
    for row in children:
        for token in sorted(row):
            indices.append(token)
            next_state.append(row[token])
        indptr.append(len(indices))
    return CsrTrie(
        torch.tensor(indptr, dtype=torch.long),
        torch.tensor(indices, dtype=torch.long),
        torch.tensor(next_state, dtype=torch.long),
        torch.tensor(terminal, dtype=torch.bool),
        vocab,
    )


def step(trie: CsrTrie, node: int, token: int) -> int:
    """The node after `token` from `node`, or -1 when the trie has no such edge."""
    start, end = int(trie.indptr[node]), int(trie.indptr[node + 1])
    row = trie.indices[start:end]
    at = int(torch.searchsorted(row, token))
    if at < row.shape[0] and int(row[at]) == token:
        return int(trie.next_state[start + at])
    return -1


def node_masks(trie: CsrTrie, nodes: torch.Tensor, eos: torch.Tensor) -> torch.Tensor:
    """[n, vocab] bool masks of `nodes` ([n] long) in one gather and one scatter: the children
    of each node, plus EOS where the node is terminal."""
    starts = trie.indptr[nodes]  # [n]
    counts = trie.indptr[nodes + 1] - starts  # [n] children of each node
    rows = torch.repeat_interleave(torch.arange(nodes.shape[0]), counts)  # [edges] its node's row
    shift = starts - (torch.cumsum(counts, 0) - counts)  # [n] edge index minus output position
    cols = trie.indices[torch.arange(rows.shape[0]) + shift[rows]]  # [edges] the child tokens
    masks = torch.zeros(nodes.shape[0], trie.vocab, dtype=torch.bool)
    masks[rows, cols] = True
    if eos.numel():
        masks[:, eos] |= trie.terminal[nodes][:, None]
    return masks


class TrieState(ConstraintState):
    def __init__(self, trie: CsrTrie, eos: torch.Tensor, path: list[int] | None = None) -> None:
        self.trie = trie
        self.eos = eos  # [n_eos] long
        self.eos_set = set(eos.tolist())
        self.path = path if path is not None else [0]  # trie nodes visited; -1 after EOS

    @property
    def node(self) -> int:
        return self.path[-1]

    def mask(self) -> torch.Tensor:
        mask = torch.zeros(self.trie.vocab, dtype=torch.bool)
        node = self.node
        if node < 0:  # after EOS nothing may follow
            return mask
        # one row: slice it out of `indices` and scatter (node_masks does many rows at once)
        mask[self.trie.indices[int(self.trie.indptr[node]) : int(self.trie.indptr[node + 1])]] = (
            True
        )
        if bool(self.trie.terminal[node]):
            mask[self.eos] = True
        return mask

    def _next(self, node: int, token: int) -> int | None:
        """The node after `token` from `node` (-1: EOS taken), or None where it is not allowed."""
        if node < 0:
            return None
        if token in self.eos_set:
            return -1 if bool(self.trie.terminal[node]) else None
        nxt = step(self.trie, node, token)
        return None if nxt < 0 else nxt

    def allows(self, token: int) -> bool:
        return self._next(self.node, token) is not None

    def advance(self, token: int) -> None:
        nxt = self._next(self.node, token)
        if nxt is None:
            raise ConstraintViolation(f"token {token} is not allowed by the allow-list here")
        self.path.append(nxt)

    def allowed_prefix(self, tokens: Sequence[int]) -> int:
        """One walk down the trie from here (the base class advances and rolls back)."""
        node: int | None = self.node
        for taken, token in enumerate(tokens):
            node = self._next(node, token)
            if node is None:
                return taken
        return len(tokens)

    def rollback(self, n: int) -> None:
        if n:
            del self.path[-n:]

    def fork(self) -> TrieState:
        return TrieState(self.trie, self.eos, list(self.path))

    def masks_along(self, tokens: Sequence[int]) -> torch.Tensor:
        nodes = [self.node]
        for token in tokens:
            nodes.append(step(self.trie, nodes[-1], token))
        if min(nodes) < 0:
            raise ConstraintViolation(f"draft {list(tokens)} leaves the allow-list")
        return node_masks(self.trie, torch.tensor(nodes), self.eos)

    @property
    def is_complete(self) -> bool:
        return self.node < 0 or bool(self.trie.terminal[self.node])

    @property
    def must_stop(self) -> bool:
        node = self.node
        if node < 0:
            return True
        return bool(self.trie.terminal[node]) and int(self.trie.indptr[node + 1]) == int(
            self.trie.indptr[node]
        )


class AllowList(Constraint):
    """Exactly one of a list of token sequences, then EOS."""

    kind = "allow"

    def __init__(
        self, sequences: list[list[int]], vocab: int, eos: Sequence[int], source: str
    ) -> None:
        self.source = source
        sequences = [s for s in sequences if s]
        if not sequences:
            raise ConfigError(f"{source}: the allow-list is empty; give one sequence per line")
        bad = [t for s in sequences for t in s if not 0 <= t < vocab]
        if bad:
            raise ConfigError(
                f"{source}: token id {bad[0]} is outside the model's vocabulary (0..{vocab - 1})"
            )
        self.allowed = {tuple(s) for s in sequences}
        self.trie = build_trie(sorted(self.allowed), vocab)
        self.eos = torch.tensor(sorted(set(eos)), dtype=torch.long)

    def start(self) -> TrieState:
        return TrieState(self.trie, self.eos)

    def satisfied(self, token_ids: Sequence[int], text: str) -> bool:
        ids = list(token_ids)
        if ids and ids[-1] in set(self.eos.tolist()):
            ids.pop()
        return tuple(ids) in self.allowed
