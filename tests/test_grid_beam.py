"""Grid Beam Search: every output contains every phrase, no phrases is exactly `beam`, and bad
phrases are refused with one clear line."""

from __future__ import annotations

import random

import pytest
import torch

from decbench.decoders.beam import BeamSearchDecoder
from decbench.decoders.grid_beam import GridBeamDecoder, GridBeamOptions, contains
from decbench.errors import ConfigError
from decbench.options import check_options
from tests.conftest import TINY_VOCAB, make_request, no_models_ctx, runner_for, tiny_llama

PROMPTS = [[2, 3], [5, 9, 11, 4, 7, 30], list(range(2, 40)), [7] * 5]
LETTERS = "abcdefghijklmnopqrstuvwxyz"


class CharTokenizer:
    """One token per character: 'a'.. -> 2.., ' ' -> 40 (inside the tiny vocabulary)."""

    eos_token_id = 1

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [40 if c == " " else 2 + LETTERS.index(c) for c in text]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return "".join(" " if i == 40 else chr(ord("a") + (i - 2) % 26) for i in ids)


def eos_prone(seed: int):
    """A tiny model whose EOS scores like a common token, so that searches can end early."""
    model = tiny_llama(seed=seed)
    with torch.no_grad():
        model.lm_head.weight[1] = model.lm_head.weight[2 + seed] * 1.5
    return model


def grid(runner, **options) -> GridBeamDecoder:
    options.setdefault("leading_space", False)
    return GridBeamDecoder(runner, GridBeamOptions(**options), no_models_ctx())


def with_tokenizer(runner):
    runner.tokenizer = CharTokenizer()
    return runner


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize(
    "width,length_penalty,early", [(1, 1.0, False), (3, 2.0, True), (4, 0.0, False)]
)
def test_no_phrases_is_beam_search(tiny_runner, prompt, width, length_penalty, early):
    options = dict(length_penalty=length_penalty, early_stopping=early)
    got = grid(tiny_runner, beam=width, **options).generate(make_request(prompt, 20))
    expected = BeamSearchDecoder(
        tiny_runner, BeamSearchDecoder.Options(width=width, **options), no_models_ctx()
    ).generate(make_request(prompt, 20))
    assert got.token_ids == expected.token_ids
    assert got.finish_reason == expected.finish_reason
    assert got.stats["constraint"]["satisfied"]


def test_every_output_contains_every_phrase():
    """Random phrases (1-3 of 1-4 letters) on random tiny models, prompts and beams."""
    rng = random.Random(0)
    ended_at_eos = 0
    for case in range(40):
        runner = with_tokenizer(runner_for(eos_prone(seed=case % 4)))
        phrases = [
            "".join(rng.choices(LETTERS[:8], k=rng.randint(1, 4))) for _ in range(rng.randint(1, 3))
        ]
        prompt = [rng.randrange(2, TINY_VOCAB) for _ in range(rng.randint(1, 6))]
        n = sum(len(p) for p in phrases) + rng.randint(0, 6)
        result = grid(runner, include=phrases, beam=rng.randint(1, 4)).generate(
            make_request(prompt, n)
        )
        for phrase in phrases:
            ids = runner.tokenizer.encode(phrase)
            assert contains(result.token_ids, ids), (case, phrases, result.token_ids)
        stats = result.stats["constraint"]
        assert stats["satisfied"] and stats["coverage"] == 1.0
        assert stats["constraint_tokens"] == sum(len(p) for p in phrases)
        assert stats["hypotheses_expanded"] > 0 or n == 1
        ended_at_eos += result.finish_reason == "eos"
    assert ended_at_eos > 0  # some searches end at EOS after meeting their phrases


def test_phrases_on_every_runner(tiny_runner):
    """The grid's batch grows and shrinks between steps; every cache reorders to it."""
    runner = with_tokenizer(tiny_runner)
    result = grid(runner, include=["abc", "d", "ef"], beam=3).generate(make_request([4, 5], 14))
    for phrase in ("abc", "d", "ef"):
        assert contains(result.token_ids, runner.tokenizer.encode(phrase))
    assert result.stats["constraint"]["hypotheses_expanded"] > 3 * len(result.token_ids)


def test_phrases_exactly_filling_the_budget():
    """C == max_new_tokens: the output is the phrases in some order, nothing else."""
    runner = with_tokenizer(runner_for(tiny_llama()))
    result = grid(runner, include=["ab", "c"], beam=2).generate(make_request([5, 6], 3))
    text = runner.tokenizer.decode(result.token_ids)
    assert text in ("abc", "cab")


def test_leading_space_is_added_when_missing():
    runner = with_tokenizer(runner_for(tiny_llama()))
    result = grid(runner, include=["ab", " c"], leading_space=True).generate(make_request([5], 10))
    assert " ab" in runner.tokenizer.decode(result.token_ids)
    assert result.stats["constraint"]["constraint_tokens"] == 5


def test_constraint_changes_the_search():
    """The constrained output differs from plain beam search where beam never says the phrase."""
    runner = with_tokenizer(runner_for(tiny_llama()))
    plain = grid(runner, beam=2).generate(make_request([3, 4, 5], 8)).token_ids
    absent = next(c for c in LETTERS[:20] if runner.tokenizer.encode(c)[0] not in plain)
    got = grid(runner, include=[absent], beam=2).generate(make_request([3, 4, 5], 8)).token_ids
    assert got != plain and runner.tokenizer.encode(absent)[0] in got


def test_bookkeeping_time_is_reported():
    runner = with_tokenizer(runner_for(tiny_llama()))
    result = grid(runner, include=["abc"], beam=3).generate(make_request([3], 8))
    stats = result.stats["constraint"]
    assert stats["bookkeeping_s"] > 0
    assert stats["bookkeeping_s_per_step"] == pytest.approx(
        stats["bookkeeping_s"] / stats["grid_steps"]
    )
    assert result.timings.phases["constraint"] == stats["bookkeeping_s"]


def test_bad_phrases_are_refused():
    runner = with_tokenizer(runner_for(tiny_llama()))
    with pytest.raises(ConfigError, match=r"method\.include\[1\] is empty"):
        check_options(GridBeamOptions(include=["ab", "  "]))
    with pytest.raises(ConfigError, match=r"method\.beam must be >= 1"):
        check_options(GridBeamOptions(beam=0))
    with pytest.raises(ConfigError, match="take 7 tokens but at most 6 can be generated"):
        grid(runner, include=["abcd", "efg"]).generate(make_request([3], 6))
    with pytest.raises(ConfigError, match="needs the model's tokenizer"):
        grid(runner_for(tiny_llama()), include=["a"]).generate(make_request([3], 6))


def test_cli_refuses_an_empty_phrase_before_loading_a_model(monkeypatch, capsys):
    from tests.test_cli import run_cli

    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "generate",
        "hi",
        "-m",
        "grid-beam",
        "--set",
        'method.include=["river", ""]',
    )
    assert code == 2
    assert "method.include[1] is empty" in err and err.count("error:") == 1
    assert "Traceback" not in err and out == ""


@pytest.mark.model
def test_cli_refuses_phrases_longer_than_the_budget(monkeypatch, capsys):
    from tests.test_cli import run_cli

    args = [
        "generate",
        "hi",
        "-m",
        "grid-beam",
        "-n",
        "1",
        "--set",
        'method.include=["river bank"]',
    ]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert "take 2 tokens but at most 1 can be generated" in err and err.count("error:") == 1


@pytest.mark.model
def test_default_model_output_contains_the_phrases(default_session):
    """On the real tokenizer: the words appear in the decoded text, with their leading space."""
    target = default_session.target
    decoder = grid(target, include=["river", "bank"], beam=2, leading_space=True)
    ids = default_session.encode("Write a sentence about a walk.")
    result = decoder.generate(make_request(ids, 24))
    assert " river" in result.text and " bank" in result.text
    assert result.stats["constraint"]["satisfied"]


def test_profile_and_spec():
    from decbench.profiles import load_profile

    profile = load_profile("grid-beam")
    assert profile.options.include == ["river", "bank"] and profile.options.beam == 4
    spec = GridBeamDecoder.spec
    assert not spec.lossless and not spec.samples and "beam" in spec.lossless_note


# -- the [constraint] table: kind = "include" is taken into grid-beam's own search ---------------
def test_include_constraint_becomes_the_phrases_and_fills_result_constraint():
    from decbench.cli.options import build_profile
    from decbench.run import constrained_options

    profile = build_profile("grid-beam", None, None, include=["abc", "de"])
    assert profile.constraint.kind == "include"
    options = constrained_options(profile, GridBeamDecoder)
    assert options.include == ["abc", "de"]
    runner = with_tokenizer(runner_for(tiny_llama()))
    result = GridBeamDecoder(runner, options, no_models_ctx()).generate(make_request([3], 12))
    assert contains(result.token_ids, runner.tokenizer.encode("abc"))
    c = result.constraint  # what compare's constraint table pools
    assert c["kind"] == "include" and c["satisfied"] is True
    assert c["mask_s"] == result.stats["constraint"]["bookkeeping_s"] > 0
    assert c["drafted"] == 0 and c["pruned_share"] is None


@pytest.mark.parametrize(
    ("method", "flags", "message"),
    [
        ("greedy", {"include": ["river"]}, "cannot honour an include constraint"),
        ("pld", {"include": ["river"]}, "use --method grid-beam"),
        ("grid-beam", {"regex": "a+"}, "cannot honour a grammar constraint"),
        ("dllm-confidence", {"regex": "a+"}, "dllm-dingo with a regex"),
    ],
)
def test_constraints_a_method_cannot_honour_are_refused(method, flags, message):
    from decbench.cli.options import build_profile
    from decbench.decoders.registry import get_decoder
    from decbench.run import constrained_options

    profile = build_profile(method, None, None, **flags)
    with pytest.raises(ConfigError, match=message):
        constrained_options(profile, get_decoder(method))


def test_cli_include_flag_refuses_an_empty_phrase_list_and_greedy(monkeypatch, capsys):
    from tests.test_cli import run_cli

    code, _, err = run_cli(monkeypatch, capsys, "generate", "hi", "--include", "river")
    assert code == 2 and "use --method grid-beam" in err and err.count("error:") == 1
    args = ("generate", "hi", "-m", "grid-beam", "--set", "constraint.kind=include")
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and "needs at least one phrase" in err


@pytest.mark.model
def test_cli_include_flag_on_the_default_model(monkeypatch, capsys):
    import json

    from tests.test_cli import run_cli

    args = ("generate", "Write a sentence about a walk.", "-m", "grid-beam", "-n", "24")
    code, out, _ = run_cli(monkeypatch, capsys, *args, "--include", "river", "--json")
    assert code == 0
    doc = json.loads(out)
    assert " river" in doc["text"]
    assert doc["constraint"]["kind"] == "include" and doc["constraint"]["satisfied"]
