"""DINGO: the token DFA agrees with Python's `re`, the block programme finds the same string as
brute-force enumeration, and dllm-dingo's outputs always match the regex."""

from __future__ import annotations

import itertools
import math
import random
import re

import pytest
import torch

from decbench.decoders.dllm_confidence import DllmConfidence
from decbench.decoders.dllm_dingo import DllmDingo
from decbench.diffusion.dingo import block_argmax, block_scores
from decbench.diffusion.token_dfa import build_token_dfa, token_texts
from decbench.errors import ConfigError
from decbench.options import check_options
from tests.conftest import TINY_VOCAB, make_request, no_models_ctx
from tests.dllm_fixtures import EOS, MASK, dllm_runner, prompts

LETTERS = "abcdefghijklmnopqrstuvwxy"
# ids 2..26 letters (no z), 27..36 digits, then some multi-character and unusable tokens
MULTI = [" ", "ab", "the", "12", ".", "-", "x1", "\ufffd", "", "c."]
TEXTS = ["<s>", "</s>", *LETTERS, *"0123456789", *MULTI]
assert len(TEXTS) == TINY_VOCAB - 1  # the last id is the mask token
REGEXES = [r"[0-9]{3}-[a-z]+", r"(ab|c)+\.", r"the [a-z]+ [0-9]+", r"x1|12|a+", r"[a-c ]*"]


class TinyTokenizer:
    all_special_ids = (0, 1)
    eos_token_id = EOS

    def __len__(self) -> int:
        return TINY_VOCAB

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return "".join(TEXTS[i] for i in ids if i < len(TEXTS) and i not in (0, 1))


def tiny_dfa(regex: str):
    texts = token_texts(TinyTokenizer(), TINY_VOCAB, exclude={MASK})
    return build_token_dfa(regex, texts, [EOS])


def text_of(tokens: list[int]) -> str | None:
    """The string the tokens spell up to EOS; None if a non-EOS token follows an EOS."""
    if EOS in tokens:
        cut = tokens.index(EOS)
        if any(t != EOS for t in tokens[cut:]):
            return None
        tokens = tokens[:cut]
    return TinyTokenizer().decode(tokens)


def fullmatch(regex: str, tokens: list[int]) -> bool:
    text = text_of(tokens)
    usable = all(t not in (0, MASK) and TEXTS[t] not in ("\ufffd", "") for t in tokens)
    return text is not None and usable and re.fullmatch(regex, text) is not None


# -- the token DFA -------------------------------------------------------------------------------
# hand-written matches, spelled with multi-character tokens where the vocabulary has them
MATCHES = {
    REGEXES[0]: [["12", "3", "-", "ab", "c"], ["9", "12", "-", "x"]],
    REGEXES[1]: [["ab", "c."], ["c", "ab", "."]],
    REGEXES[2]: [["the", " ", "c", "ab", " ", "12"]],
    REGEXES[3]: [["x1"], ["12"], ["a", "a"]],
    REGEXES[4]: [[], [" ", "ab", "c"]],
}


def ids_of(texts: list[str]) -> list[int]:
    return [TEXTS.index(t) for t in texts]


@pytest.mark.parametrize("regex", REGEXES)
def test_token_dfa_accepts_what_re_fullmatches(regex):
    dfa = tiny_dfa(regex)
    for texts in MATCHES[regex]:
        assert dfa.accepts([*ids_of(texts), EOS]) and fullmatch(regex, ids_of(texts))
    rng = random.Random(1)
    useful = ids_of(
        ["1", "2", "3", "a", "b", "c", "x", "ab", "12", "x1", "c.", ".", "-", " ", "the"]
    )
    useful += [0, MASK, TEXTS.index("")]  # never allowed
    for n in range(1, 6):
        for _ in range(400):
            tokens = [rng.choice(useful) for _ in range(n)] + [EOS] * rng.randint(0, 2)
            assert dfa.accepts(tokens) == fullmatch(regex, tokens), tokens
    assert dfa.live_tokens < TINY_VOCAB and int(dfa.table[:, MASK].max()) == -1


# -- the block programme against brute force -----------------------------------------------------
def enumeration_rows(logprobs, placed, masked):
    """The brute force's view of a step: a placed position has its token with probability 1, a
    masked one any token with probability 1."""
    rows = logprobs.clone()
    for i, token in placed.items():
        rows[i] = -math.inf
        rows[i, token] = 0.0
    rows[masked] = 0.0
    return rows


def brute_force(regex, logprobs, placed, ok):
    """Every string of the block (placed positions fixed) that `ok` accepts; the best one."""
    d, vocab = logprobs.shape
    rows = logprobs.double().tolist()
    choices = [[placed[i]] if i in placed else range(vocab) for i in range(d)]
    best, best_score = None, -math.inf
    for tokens in itertools.product(*choices):
        score = sum(row[t] for row, t in zip(rows, tokens, strict=True))
        if score > best_score and ok(list(tokens)):
            best, best_score = list(tokens), score
    return best, best_score


@pytest.mark.parametrize("regex", [r"(ab|c)+\.", r"x1|12|a+", r"[0-9]{2}-?b"])
def test_block_programme_is_the_brute_force_argmax(regex):
    """Free positions, a placed one (a point mass) and a masked one (any token, probability 1):
    the programme's tokens at the free positions and its score are the enumeration's."""
    dfa = tiny_dfa(regex)
    g = torch.Generator().manual_seed(0)
    found_some = 0
    for trial in range(16):
        d = 3 if trial % 4 in (1, 3) else 2  # at most 48^2 strings to enumerate
        logprobs = torch.log_softmax(torch.randn(d, TINY_VOCAB, generator=g) * 3, dim=-1)
        placed = {1: 30} if trial % 4 in (1, 3) else {}  # a placed '3' in the middle
        masked = [d - 1] if trial % 4 in (2, 3) else []  # the last position stays masked
        rows = enumeration_rows(logprobs, placed, masked)
        end_ok = dfa.distance == 0  # the last block: a full match
        got = block_argmax(dfa, block_scores(dfa, logprobs, placed, masked), dfa.initial, end_ok)
        want, want_score = brute_force(regex, rows, placed, lambda t: fullmatch(regex, t))
        if want is None:
            assert got is None
            continue
        found_some += 1
        tokens, score = got
        assert fullmatch(regex, tokens)  # the masked position's pick is some allowed token
        free = [i for i in range(d) if i not in masked]
        assert [tokens[i] for i in free] == [want[i] for i in free]
        assert score == pytest.approx(want_score)
        unmasked = [i for i in free if i not in placed]
        assert score == pytest.approx(sum(float(logprobs[i, tokens[i]]) for i in unmasked))
    assert found_some >= 8


def test_block_programme_for_a_middle_block_keeps_a_completable_prefix():
    """Not the last block: the block's string need only leave the DFA where the `room` positions
    after it can still finish a match."""
    regex = r"[0-9]{3}-[a-z]+"
    dfa = tiny_dfa(regex)
    g = torch.Generator().manual_seed(3)
    for room in (0, 1, 2, 3, 6):
        logprobs = torch.log_softmax(torch.randn(2, TINY_VOCAB, generator=g) * 3, dim=-1)
        end_ok = dfa.distance <= room

        def ok(tokens, room=room):
            state = dfa.walk(tokens)
            return state >= 0 and int(dfa.distance[state]) <= room

        want, want_score = brute_force(regex, logprobs, {}, ok)
        got = block_argmax(dfa, block_scores(dfa, logprobs, {}, []), dfa.initial, end_ok)
        if room < 2:  # "123-a" takes 4 tokens at least ("12" "3" "-" "a")
            assert want is None and got is None
            continue
        assert got == (want, pytest.approx(want_score))


# -- the decoder ---------------------------------------------------------------------------------
def dingo(runner, regex, **options) -> DllmDingo:
    runner.tokenizer = TinyTokenizer()
    return DllmDingo(runner, DllmDingo.Options(regex=regex, **options), no_models_ctx())


def random_denoiser(decoder, seed: int, forbid: tuple[int, ...] = ()):
    """Replace the denoiser's forward by random logits, a function of the canvas (so that two
    decoders reading the same canvas see the same distributions)."""

    def denoise(ids, prompt_len):
        key = hash((seed, *ids[0].tolist())) % (2**31)
        g = torch.Generator().manual_seed(key)
        logits = torch.randn(1, ids.shape[1] - prompt_len, TINY_VOCAB, generator=g) * 4
        logits[..., list(forbid)] = -1e4
        return logits

    decoder.denoiser.denoise = denoise
    return decoder


@pytest.mark.parametrize("regex", REGEXES)
def test_outputs_always_match_under_random_distributions(regex):
    ended = 0
    for seed in range(12):
        block, k = [(4, 1), (8, 2), (16, 3)][seed % 3]
        decoder = random_denoiser(
            dingo(dllm_runner(), regex, block_length=block, tokens_per_step=k), seed
        )
        result = decoder.generate(make_request([5, 6, 7], max_new_tokens=16))
        assert fullmatch(regex, result.token_ids), (seed, result.token_ids)
        assert result.stats["constraint"]["satisfied"]
        ended += result.finish_reason == "eos"
    assert ended > 0


def test_end_to_end_on_the_tiny_dllm():
    regex = r"the [a-z]+ [0-9]+\."
    for prompt in prompts(4):
        result = dingo(dllm_runner(sharp=4.0), regex, block_length=8).generate(
            make_request(prompt, max_new_tokens=12)
        )
        assert fullmatch(regex, result.token_ids), result.token_ids
        stats = result.stats["constraint"]
        assert stats["satisfied"] and stats["kind"] == "regex"
        assert stats["bookkeeping_s"] > 0 and stats["dfa_states"] > 2
        assert result.stats["dllm"]["forward_calls"] > 0
        assert result.constraint["kind"] == "regex" and result.constraint["satisfied"]
        assert result.constraint["mask_s"] == stats["bookkeeping_s"]


def test_a_regex_constraint_becomes_method_regex():
    """--regex (constraint.kind = grammar, regex) is taken into dllm-dingo's own programme
    instead of an llguidance mask."""
    from decbench.cli.options import build_profile
    from decbench.run import constrained_options

    profile = build_profile("dllm-dingo", None, None, regex=r"the [a-z]+\.")
    assert constrained_options(profile, DllmDingo).regex == r"the [a-z]+\."
    lark = build_profile("dllm-dingo", None, None, grammar="rules.lark")
    with pytest.raises(ConfigError, match="cannot honour a grammar constraint"):
        constrained_options(lark, DllmDingo)


def test_a_regex_that_allows_the_models_choices_changes_nothing():
    """With EOS and unusable tokens never preferred, `.*`-like regexes leave every step's argmax
    allowed, so dllm-dingo is dllm-confidence token for token."""
    forbid = (0, EOS, MASK, TEXTS.index("\ufffd"), TEXTS.index(""))
    for seed in range(4):
        ours = random_denoiser(dingo(dllm_runner(), r"(.|\n)*", block_length=8), seed, forbid)
        ref = DllmConfidence(ours.target, DllmConfidence.Options(block_length=8), no_models_ctx())
        ref.denoiser = ours.denoiser
        request = make_request([5, 6], max_new_tokens=16)
        assert ours.generate(request).token_ids == ref.generate(request).token_ids


def test_bad_regexes_are_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"method\.regex '\(ab' is not a supported"):
        check_options(DllmDingo.Options(regex="(ab"))
    with pytest.raises(ConfigError, match=r"method\.regex is empty"):
        check_options(DllmDingo.Options(regex=""))
    with pytest.raises(ConfigError, match="matches no string this vocabulary can spell"):
        dingo(dllm_runner(), "Q+")
    with pytest.raises(ConfigError, match="shortest match takes 9 tokens, more than the 4"):
        dingo(dllm_runner(), "a{9}").generate(make_request([5], max_new_tokens=4))
    with pytest.raises(ConfigError, match="needs the model's tokenizer"):
        DllmDingo(dllm_runner(), DllmDingo.Options(regex="a"), no_models_ctx())


def test_cli_refuses_a_bad_regex_before_loading_a_model(monkeypatch, capsys):
    from tests.test_cli import run_cli

    args = ["generate", "hi", "-m", "dllm-dingo", "--set", "method.regex='[a-'"]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert "method.regex '[a-' is not a supported regular expression" in err
    assert err.count("error:") == 1 and "Traceback" not in err and out == ""


def test_profile_and_spec():
    from decbench.profiles import load_profile

    profile = load_profile("dllm-dingo")
    assert profile.options.regex and profile.options.block_length == 16
    assert DllmDingo.spec.diffusion and not DllmDingo.spec.lossless


@pytest.mark.model
def test_the_default_tokenizers_dfa(default_session):
    """On the real 49152-token vocabulary: token texts concatenate to the decoded text, and the
    DFA accepts the tokenisation of a matching string and refuses a near miss."""
    tokenizer = default_session.target.tokenizer
    texts = token_texts(tokenizer, default_session.target.vocab_size, exclude=set())
    regex = r'\{"name": "[A-Za-z ]+", "age": [0-9]{1,3}\}'
    dfa = build_token_dfa(regex, texts, default_session.target.eos_token_ids)
    good = '{"name": "Ada Lovelace", "age": 36}'
    ids = tokenizer.encode(good, add_special_tokens=False)
    assert "".join(texts[i] for i in ids) == good
    assert dfa.accepts(ids) and dfa.accepts([*ids, tokenizer.eos_token_id])
    assert not dfa.accepts(tokenizer.encode(good.replace("36", "3600"), add_special_tokens=False))
    assert dfa.classes < 100 < dfa.live_tokens
