"""SAM decoding: the suffix automata agree with a brute-force longest-suffix search on random
token streams (dynamic and static, saved and reloaded), hand-written cases of what gets
drafted, the datastore built from a corpus file, token identity with greedy for `sam` and
`sam-eagle`, lossless sampling, bad options, and the default model."""

from __future__ import annotations

import random

import pytest

from decbench.decoders.speculative.sam import Sam, SamOptions, SamProposer, load_datastore
from decbench.decoders.speculative.sam_eagle import SamEagle, SamEagleOptions
from decbench.decoders.speculative.suffix_automaton import (
    Match,
    StaticAutomaton,
    StreamMatcher,
    SuffixAutomaton,
)
from decbench.errors import ConfigError
from decbench.settings import SamplingSettings
from tests.conftest import greedy_ids, make_request, no_models_ctx, repetitive_prompts
from tests.test_eagle import trained_folder


def occurs(pattern: list[int], text: list[int]) -> bool:
    n = len(pattern)
    return any(text[i : i + n] == pattern for i in range(len(text) - n + 1))


def longest_earlier_suffix(text: list[int]) -> int:
    """Brute force: the longest suffix of `text` that also occurs in text[:-1]."""
    best = 0
    for n in range(1, len(text)):
        if occurs(text[-n:], text[:-1]):
            best = n
    return best


def longest_suffix_in(stream: list[int], corpus: list[int]) -> int:
    best = 0
    for n in range(1, len(stream) + 1):
        if occurs(stream[-n:], corpus):
            best = n
    return best


def assert_valid(match: Match, suffix_of: list[int], text: list[int], before: int) -> None:
    """The reported occurrence really is the match: it ends at match.end < before."""
    if match.length == 0:
        assert match.end == -1
        return
    assert match.end < before
    start = match.end - match.length + 1
    assert text[start : match.end + 1] == suffix_of[len(suffix_of) - match.length :]


# -- the automata ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("vocab", "seed"), [(2, 0), (3, 1), (5, 2), (20, 3)])
def test_stream_match_is_the_longest_earlier_suffix(vocab, seed):
    rng = random.Random(seed)
    tokens = [rng.randrange(vocab) for _ in range(150)]
    matcher = StreamMatcher()
    for n in range(1, len(tokens) + 1):
        matcher.update(tokens[:n])
        match = matcher.match
        assert match.length == longest_earlier_suffix(tokens[:n]), n
        assert_valid(match, tokens[:n], tokens, n - 1)
        if match.length:
            assert match.continuation(3) == tokens[:n][match.end + 1 : match.end + 4]
            assert match.continuation(3)  # never empty: the occurrence ends before the last token


@pytest.mark.parametrize(("vocab", "seed"), [(3, 4), (6, 5)])
def test_static_match_is_the_longest_suffix_in_the_corpus_after_a_save_and_load(
    vocab, seed, tmp_path
):
    rng = random.Random(seed)
    corpus = [rng.randrange(vocab) for _ in range(120)]
    automaton = SuffixAutomaton()
    for token in corpus:
        automaton.extend(token)
    automaton.freeze().save(tmp_path / "store.npz", {"schema": "x"})
    frozen, meta = StaticAutomaton.load(tmp_path / "store.npz")
    assert meta == {"schema": "x"}
    stream = [rng.randrange(vocab) for _ in range(100)]
    match = Match(frozen)
    for n, token in enumerate(stream, start=1):
        match.read(token)
        assert match.length == longest_suffix_in(stream[:n], corpus), n
        assert_valid(match, stream[:n], corpus, len(corpus))


def test_the_automaton_stays_linear_in_size():
    automaton = SuffixAutomaton()
    rng = random.Random(7)
    for _ in range(2000):
        automaton.extend(rng.randrange(4))
    assert len(automaton.length) <= 2 * 2000  # at most 2n - 1 states
    assert sum(len(t) for t in automaton.trans) <= 3 * 2000  # at most 3n - 4 transitions


def draft_of(tokens: list[int], k: int = 3, min_match: int = 1) -> list[int]:
    from decbench.decoders.speculative.proposer import ProposerContext

    proposer = SamProposer(SamOptions(k=k, min_match=min_match), None)
    ctx = ProposerContext(tokens, 0, 100, SamplingSettings(), None)
    return proposer.propose(ctx).tokens


def test_drafts_follow_the_longest_then_the_most_recent_match():
    # [1, 2, 3] occurred at the start (then 7 8); [3] alone recurs later (then 9): longest wins
    assert draft_of([1, 2, 3, 7, 8, 3, 9, 5, 1, 2, 3]) == [7, 8, 3]
    assert draft_of([4, 5, 10, 4, 5, 11, 4, 5], k=1) == [11]  # the latest of equal matches
    assert draft_of([1, 2, 3]) == []  # the current suffix never matches itself
    assert draft_of([1, 2, 9, 1, 2], min_match=3) == []  # a match of 2 is below the threshold
    assert draft_of([9, 1, 9], k=5) == [1, 9]  # the continuation may run into the suffix


def test_datastore_is_built_from_a_corpus_once_and_refused_when_foreign(tmp_path, monkeypatch):
    from decbench.backends.runner import ModelRunner
    from tests.conftest import tiny_llama

    class Tokenizer:  # one token id per character, inside the tiny vocabulary
        eos_token_id = None

        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return [2 + ord(c) % 40 for c in text]

    monkeypatch.setenv("DECBENCH_CACHE", str(tmp_path / "cache"))
    runner = ModelRunner(tiny_llama(), tokenizer=Tokenizer(), name="tiny")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog")
    store = load_datastore(str(corpus), runner)
    assert store.text == Tokenizer().encode(corpus.read_text())
    built = list((tmp_path / "cache" / "sam").glob("corpus-*.npz"))
    assert len(built) == 1
    assert load_datastore(str(built[0]), runner).text == store.text  # loads by its path too
    with pytest.raises(ConfigError, match=r"method\.datastore: no file"):
        load_datastore(str(tmp_path / "missing.txt"), runner)
    foreign = SuffixAutomaton()
    for token in [5, 999]:
        foreign.extend(token)
    foreign.freeze().save(tmp_path / "foreign.npz", {"schema": "decbench/sam-datastore/v1"})
    with pytest.raises(ConfigError, match="past the target's vocabulary"):
        load_datastore(str(tmp_path / "foreign.npz"), runner)


# -- lossless -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("k", "min_match"), [(1, 1), (4, 2), (8, 3)])
def test_sam_equals_greedy(tiny_runner, k, min_match):
    sam = Sam(tiny_runner, SamOptions(k=k, min_match=min_match), no_models_ctx())
    accepted = 0
    for prompt in repetitive_prompts(6):
        result = sam.generate(make_request(prompt, 24))
        assert result.token_ids == greedy_ids(tiny_runner, prompt, 24)
        accepted += result.stats["accepted"]
    assert accepted > 0


@pytest.mark.parametrize("min_match", [1, 3, 100])
def test_sam_eagle_equals_greedy(tiny_runner, tmp_path, min_match):
    folder = trained_folder(tiny_runner, tmp_path)
    options = SamEagleOptions(draft=str(folder), k=4, min_match=min_match, top_k=2, depth=3)
    hybrid = SamEagle(tiny_runner, options, no_models_ctx())
    retrieved = modelled = 0
    for prompt in repetitive_prompts(6):
        result = hybrid.generate(make_request(prompt, 24))
        assert result.token_ids == greedy_ids(tiny_runner, prompt, 24)
        retrieved += result.stats["proposer"]["retrieval_steps"]
        modelled += result.stats["proposer"]["model_steps"]
    assert modelled > 0 and (retrieved > 0) == (min_match < 100)  # both sources were exercised


def test_bad_options_are_config_errors(tiny_runner, tmp_path):
    with pytest.raises(ConfigError, match=r"method\.min_match must be >= 1, got 0"):
        Sam(tiny_runner, SamOptions(min_match=0), no_models_ctx())
    with pytest.raises(ConfigError, match=r"method\.nodes"):
        SamEagle(tiny_runner, SamEagleOptions(draft=str(tmp_path), nodes=-1), no_models_ctx())


# -- the default model --------------------------------------------------------------------------
@pytest.mark.model
def test_sam_and_sam_eagle_on_the_default_model(default_session):
    from decbench.decoders.base import Request
    from decbench.decoders.greedy import Greedy
    from decbench.settings import GenerationSettings
    from tests.test_tree import DEFAULT_MODEL_PROMPT

    ids = default_session.encode(DEFAULT_MODEL_PROMPT)
    request = Request("", ids, GenerationSettings(max_new_tokens=40), SamplingSettings())
    ctx = default_session.decoder.ctx
    expected = Greedy(default_session.target, Greedy.Options(), ctx).generate(request).token_ids
    for decoder in (
        Sam(default_session.target, SamOptions(), ctx),
        SamEagle(default_session.target, SamEagleOptions(), ctx),
    ):
        result = decoder.generate(request)
        assert result.token_ids == expected
        assert result.stats["mat"] > 1.0
