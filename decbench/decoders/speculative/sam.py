"""SAM decoding (Hu et al., "SAM Decoding: Speculative Decoding via Suffix Automaton", 2024):
retrieval drafts from the longest suffix match, found with suffix automata.

A suffix automaton over prompt + generated tokens is extended online as tokens are committed
(amortised O(1) per token, suffix_automaton.py) and tracks the longest suffix of the text that
also occurs earlier in it; the draft is the `k` tokens that followed that occurrence (its most
recent one, as far as the automaton has seen). Unlike prompt lookup's fixed n-gram sizes, the
match can be any length, and the match length says how much to trust it: below
`min_match` nothing is drafted.

An optional static datastore (REST's idea, Li et al. 2024, with an automaton in place of a
suffix array) indexes a corpus: `datastore` names a text file, tokenized with the target's
tokenizer, whose automaton is built once and saved as a .npz of numpy arrays in decbench's
cache (or names such a .npz directly). The longer of the two matches drafts.

Lossless: exact match under greedy; under sampling the draft is one-hot (q(x) = 1) for
rejection sampling.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative.engine import PlannedDecoder, RowPlan
from decbench.decoders.speculative.proposer import Draft, Feedback, ProposerContext
from decbench.decoders.speculative.suffix_automaton import (
    StaticAutomaton,
    StreamMatcher,
    SuffixAutomaton,
)
from decbench.errors import ConfigError
from decbench.options import option

DATASTORE_SCHEMA = "decbench/sam-datastore/v1"


@dataclass
class SamOptions:
    k: int = option(4, ge=1)  # draft tokens per step (at most)
    min_match: int = option(2, ge=1)  # draft only when the suffix match is at least this long
    datastore: str = ""  # corpus text file (built once, cached) or a built .npz; "" = none


class SamProposer:
    def __init__(self, options: SamOptions, static: StaticAutomaton | None) -> None:
        self.options = options
        self.matcher = StreamMatcher(static)

    def propose(self, ctx: ProposerContext) -> Draft:
        self.matcher.update(ctx.tokens)
        match = self.matcher.best()
        if match.length < self.options.min_match:
            return Draft([])
        source = "sam-static" if match is self.matcher.static else "sam"
        tokens = match.continuation(min(self.options.k, ctx.max_tokens))
        return Draft(tokens, None, None, [source] * len(tokens))

    def observe(self, feedback: Feedback) -> None:
        """Retrieval needs no feedback; the automaton catches up on the next propose."""


def datastore_path(corpus: Path, tokenizer_name: str) -> Path:
    from decbench.models import cache_root

    digest = hashlib.sha256(corpus.read_bytes()).hexdigest()[:16]
    tok = hashlib.sha256(tokenizer_name.encode()).hexdigest()[:8]
    return cache_root() / "sam" / f"{corpus.stem}-{digest}-{tok}.npz"


def build_datastore(corpus: Path, target: ModelRunner, out: Path) -> StaticAutomaton:
    """Tokenize the corpus with the target's tokenizer, build its automaton, save it to `out`."""
    if target.tokenizer is None:
        raise ConfigError("method.datastore: the target has no tokenizer to read a corpus with")
    ids = target.tokenizer.encode(corpus.read_text(encoding="utf-8"), add_special_tokens=False)
    automaton = SuffixAutomaton()
    for token in ids:
        automaton.extend(int(token))
    frozen = automaton.freeze()
    meta = {"schema": DATASTORE_SCHEMA, "tokenizer": target.name, "corpus": str(corpus)}
    frozen.save(out, meta)
    return frozen


def load_datastore(option: str, target: ModelRunner) -> StaticAutomaton | None:
    """The static automaton for `method.datastore`, built and cached on first use of a corpus."""
    if not option:
        return None
    path = Path(option).expanduser()
    if not path.is_file():
        raise ConfigError(f"method.datastore: no file at '{path}' (a text corpus or a .npz)")
    if path.suffix != ".npz":
        built = datastore_path(path, target.name)
        if not built.is_file():
            return build_datastore(path, target, built)
        path = built
    try:
        automaton, meta = StaticAutomaton.load(path)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"method.datastore: '{path}' is not a SAM datastore ({e})") from e
    if meta.get("schema") != DATASTORE_SCHEMA:
        raise ConfigError(f"method.datastore: '{path}' is not a {DATASTORE_SCHEMA} file")
    if automaton.text and max(automaton.text) >= target.vocab_size:
        raise ConfigError(
            f"method.datastore: '{path}' holds token ids past the target's vocabulary "
            f"({target.vocab_size}); it was built with tokenizer '{meta.get('tokenizer')}'"
        )
    return automaton


@register_decoder
class Sam(PlannedDecoder):
    spec = MethodSpec(
        name="sam",
        summary="suffix-automaton retrieval: draft what followed the longest suffix match",
        paper="Hu et al., SAM Decoding: Speculative Decoding via Suffix Automaton (2024)",
        lossless=True,
        lossless_note="exact match under greedy; one-hot rejection sampling under sampling",
        drafts=True,
        constraints=True,
    )
    Options = SamOptions

    def __init__(self, target: ModelRunner, options: SamOptions, ctx) -> None:
        super().__init__(target, options, ctx)
        self.static = load_datastore(options.datastore, target)

    def plan(self, request: Request, row: int = 0) -> RowPlan:
        tokens = None if self.static is None else len(self.static.text)
        return RowPlan(
            SamProposer(self.options, self.static), report=lambda: {"datastore_tokens": tokens}
        )
