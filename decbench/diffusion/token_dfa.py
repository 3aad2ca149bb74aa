"""A regular expression as a DFA over the model's tokens, for constrained dLLM decoding (DINGO).

The character DFA comes from `interegular` (regex syntax as Python's `re`, without lookaround
or back-references). The token-level table `table[q, t]` is the state reached from state q by
reading token t's text, -1 when the regex can no longer be matched from there. It is computed
for all states and all tokens at once: token texts become a padded matrix of the DFA's
character classes, and each character position is one gather over [states, tokens] (tokens
sorted by length, so each gather only touches the tokens that long). Tokens that can never be
placed under a regex (special tokens other than EOS, the mask token, texts that are not whole
UTF-8 characters, empty texts) have no transitions. EOS is allowed from accepting states and
leads to `ended`, where only EOS follows (the canvas's padding). `distance[q]` is the fewest
tokens that take q to acceptance (0 for accepting states and `ended`), which lets a block end
only in a state the rest of the canvas can still complete.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from decbench.errors import ConfigError

UNREACHABLE = np.iinfo(np.int32).max


@dataclass
class TokenDFA:
    regex: str
    table: torch.Tensor  # [states, vocab] int64: next state, -1 where the token is not allowed
    initial: int
    ended: int  # the state after EOS: only EOS follows
    distance: torch.Tensor  # [states] int64: fewest tokens to acceptance (UNREACHABLE if none)
    eos: list[int]
    token_class: torch.Tensor  # [vocab] int64: tokens with equal table columns share a class
    # (`classes` for tokens never allowed); the DINGO programme works on classes, not tokens
    classes: int
    representative: torch.Tensor  # [classes + 1] the lowest token id of each class
    src: torch.Tensor  # [edges] allowed transitions between states, one per token class
    cls: torch.Tensor  # [edges]
    dst: torch.Tensor  # [edges]

    @property
    def states(self) -> int:
        return self.table.shape[0]

    @property
    def live_tokens(self) -> int:
        """Tokens allowed from at least one state."""
        return int((self.table >= 0).any(dim=0).sum())

    def walk(self, tokens: list[int], state: int | None = None) -> int:
        """The state after `tokens` (-1 once a token is not allowed)."""
        state = self.initial if state is None else state
        for token in tokens:
            if state < 0:
                break
            state = int(self.table[state, token])
        return state

    def accepts(self, tokens: list[int]) -> bool:
        """Whether the tokens (EOS padding included) spell a string of the regex."""
        state = self.walk(tokens)
        return state >= 0 and int(self.distance[state]) == 0


def char_dfa(regex: str):
    """interegular's FSM for `regex`, or a one-line ConfigError."""
    try:
        import interegular
    except ImportError as e:  # pragma: no cover - a dependency of decbench
        raise ConfigError(
            "method.regex needs the 'interegular' package (pip install interegular)"
        ) from e
    if not regex:
        raise ConfigError("method.regex is empty; give a regular expression such as '[0-9]+'")
    try:
        return interegular.parse_pattern(regex).to_fsm()
    except Exception as e:  # interegular raises several unrelated types for bad patterns
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(
            f"method.regex {regex!r} is not a supported regular expression: {reason}"
        ) from e


def char_table(fsm) -> tuple[np.ndarray, np.ndarray, dict]:
    """(transitions [states + 1, classes + 1] with a dead state last and an identity padding
    class last, accepting [states + 1] bool, the state numbering)."""
    number = {state: i for i, state in enumerate(sorted(fsm.states))}
    dead = len(number)
    classes = len(fsm.alphabet.by_transition)
    trans = np.full((dead + 1, classes + 1), dead, dtype=np.int32)
    for state, moves in fsm.map.items():
        for cls, nxt in moves.items():
            trans[number[state], cls] = number[nxt]
    trans[:, classes] = np.arange(dead + 1)  # padding keeps the state
    accepting = np.zeros(dead + 1, dtype=bool)
    accepting[[number[s] for s in fsm.finals]] = True
    return trans, accepting, number


def class_matrix(fsm, texts: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Token texts as [tokens, longest] character classes, padded, longest first; and the
    order (token ids) of the rows. Tokens without text are left out."""
    pad = len(fsm.alphabet.by_transition)
    classes: dict[str, int] = {}
    ids = [i for i, text in enumerate(texts) if text]
    ids.sort(key=lambda i: -len(texts[i]))
    longest = len(texts[ids[0]]) if ids else 0
    matrix = np.full((len(ids), longest), pad, dtype=np.int32)
    for row, i in enumerate(ids):
        for col, char in enumerate(texts[i]):
            if char not in classes:
                classes[char] = fsm.alphabet[char]
            matrix[row, col] = classes[char]
    return matrix, np.array(ids, dtype=np.int64)


def walk_all(trans: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """[states, tokens]: the state each token's text leads to from every state (dead last)."""
    states = trans.shape[0]
    cur = np.repeat(np.arange(states, dtype=np.int32)[:, None], matrix.shape[0], axis=1)
    pad = trans.shape[1] - 1
    lengths = (matrix != pad).sum(axis=1)
    for col in range(matrix.shape[1]):
        n = int((lengths > col).sum())  # rows are sorted longest first
        cur[:, :n] = trans[cur[:, :n], matrix[None, :n, col]]
    return cur


def distances(adjacent: np.ndarray, accepting: np.ndarray) -> np.ndarray:
    """Fewest steps from each state to an accepting one over a [states, states] bool graph."""
    dist = np.where(accepting, 0, UNREACHABLE).astype(np.int64)
    frontier = accepting.copy()
    step = 0
    while frontier.any():
        step += 1
        reach = adjacent[:, frontier].any(axis=1) & (dist == UNREACHABLE)
        dist[reach] = step
        frontier = reach
    return dist


def build_token_dfa(regex: str, texts: list[str | None], eos: list[int]) -> TokenDFA:
    """The token DFA of `regex` over a vocabulary whose token t spells `texts[t]` (None: never
    allowed). EOS ids get their own transitions whatever their text."""
    fsm = char_dfa(regex)
    trans, accepting, number = char_table(fsm)
    texts = [None if t in eos else text for t, text in enumerate(texts)]
    matrix, ids = class_matrix(fsm, texts)
    dead = trans.shape[0] - 1
    reached = walk_all(trans, matrix)[:dead]  # [states, tokens in `ids`]
    states, vocab = dead + 1, len(texts)  # the dead slot becomes `ended`
    ended = dead
    table = np.full((states, vocab), -1, dtype=np.int64)
    table[:dead, ids] = np.where(reached == dead, -1, reached)
    accepting[ended] = True
    for token in eos:
        table[accepting, token] = ended
    adjacent = np.zeros((states, states), dtype=bool)
    src, tok = np.nonzero(table >= 0)
    adjacent[src, table[src, tok]] = True
    dist = distances(adjacent, accepting)
    allowed = table >= 0  # keep only transitions into states that can still accept
    table[allowed] = np.where(dist[table[allowed]] == UNREACHABLE, -1, table[allowed])
    initial = number[fsm.initial]
    if dist[initial] == UNREACHABLE:
        raise ConfigError(f"method.regex {regex!r} matches no string this vocabulary can spell")
    token_class, classes, representative, (src, cls, dst) = token_classes(table)
    return TokenDFA(
        regex=regex,
        table=torch.from_numpy(table),
        initial=initial,
        ended=ended,
        distance=torch.from_numpy(dist),
        eos=list(eos),
        token_class=torch.from_numpy(token_class),
        classes=classes,
        representative=torch.from_numpy(representative),
        src=torch.from_numpy(src),
        cls=torch.from_numpy(cls),
        dst=torch.from_numpy(dst),
    )


def token_classes(table: np.ndarray):
    """Tokens whose transitions agree from every state form one class. Returns the class of
    each token ([vocab], `classes` for tokens never allowed), the number of classes, the lowest
    token of each class ([classes + 1], vocab for the last), and the edges (src, class, dst) of
    the class-level table."""
    vocab = table.shape[1]
    allowed = np.nonzero((table >= 0).any(axis=0))[0]
    columns, first, inverse = np.unique(
        table[:, allowed].T, axis=0, return_index=True, return_inverse=True
    )
    classes = len(columns)
    token_class = np.full(vocab, classes, dtype=np.int64)
    token_class[allowed] = inverse.reshape(-1)
    representative = np.append(allowed[first], vocab).astype(np.int64)
    src, cls = np.nonzero(columns.T >= 0)
    return token_class, classes, representative, (src, cls, columns.T[src, cls])


def token_texts(tokenizer, vocab_size: int, exclude: set[int]) -> list[str | None]:
    """What each token id spells on its own (None: special, excluded, past the tokenizer, or
    not whole UTF-8 characters)."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    size = min(vocab_size, len(tokenizer)) if hasattr(tokenizer, "__len__") else vocab_size
    batch = getattr(tokenizer, "batch_decode", None)
    rows = [[i] for i in range(size)]
    if batch:  # transformers: no clean-up, which would drop spaces before punctuation
        texts = batch(rows, clean_up_tokenization_spaces=False)
    else:
        texts = [tokenizer.decode(r) for r in rows]
    out: list[str | None] = [None] * vocab_size
    for i, text in enumerate(texts):
        if i not in special and i not in exclude and text and "\ufffd" not in text:
            out[i] = text
    return out
