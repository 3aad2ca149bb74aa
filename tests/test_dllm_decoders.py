"""The dllm-* decoders on tiny random bidirectional denoisers: the reference's schedule,
threshold 1.0 = one token per step, FreeDave identical to the reference with fewer forwards,
cache on = cache off where Fast-dLLM says so, Prophet's and CreditDecoding's rules."""

from __future__ import annotations

import pytest
import torch

from decbench.decoders.dllm_credit import fuse, update_credit
from decbench.decoders.dllm_prophet import top2_gap
from decbench.decoders.registry import get_decoder
from decbench.errors import ConfigError
from tests.conftest import no_models_ctx, runner_for, tiny_llama
from tests.dllm_fixtures import EOS, MASK, calls, decode, dllm_runner, prompts

METHODS = ["dllm-confidence", "dllm-threshold", "dllm-prophet", "dllm-credit", "dllm-freedave"]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_fills_the_canvas_and_declares_itself(method):
    runner = dllm_runner(sharp=8.0)
    result = decode(runner, method, [5, 9, 11, 4], n=20, block_length=8)
    assert len(result.token_ids) == 20 and result.finish_reason == "length"
    assert MASK not in result.token_ids
    stats = result.stats["dllm"]
    assert stats["forward_calls"] >= 1 and stats["canvas_length"] == 20
    assert stats["steps_per_token"] == stats["forward_calls"] / 20
    spec = get_decoder(method).spec
    assert spec.diffusion and not spec.drafts and not spec.samples and spec.paper
    assert all(step.canvas is not None for step in result.steps)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_reference_unmasks_k_per_forward_block_by_block(k):
    runner = dllm_runner(sharp=4.0)
    result = decode(runner, "dllm-confidence", [3, 4, 5], n=20, block_length=8, tokens_per_step=k)
    blocks = [8, 8, 4]
    expected = sum(-(-b // k) for b in blocks)
    assert calls(result) == expected == len(result.steps)
    seen = []
    for step in result.steps:
        trace = step.canvas
        assert len(trace.positions) <= k
        assert all(p // 8 == trace.block for p in trace.positions)
        seen += trace.positions
    assert sorted(seen) == list(range(20))
    assert [s.canvas.block for s in result.steps] == sorted(s.canvas.block for s in result.steps)


def test_committed_output_is_the_final_canvas():
    """Tokens reach the output left to right, as soon as the run on the left is final."""
    result = decode(dllm_runner(sharp=4.0), "dllm-confidence", [3, 4], n=16, block_length=16)
    canvas = [MASK] * 16
    committed = 0
    for step in result.steps:
        for p, t in zip(step.canvas.positions, step.canvas.tokens, strict=True):
            canvas[p] = t
        run = 0
        while committed + run < 16 and canvas[committed + run] != MASK:
            run += 1
        assert step.emitted == run
        committed += run
    assert canvas == result.token_ids


@pytest.mark.parametrize("prompt", prompts(6, seed=1))
@pytest.mark.parametrize("block_length", [4, 8, 32])
def test_threshold_one_is_one_token_per_step_and_equals_the_reference(prompt, block_length):
    runner = dllm_runner(sharp=6.0)
    ref = decode(runner, "dllm-confidence", prompt, block_length=block_length)
    thr = decode(
        runner, "dllm-threshold", prompt, block_length=block_length, threshold=1.0, cache="none"
    )
    assert all(len(step.canvas.positions) == 1 for step in thr.steps)
    assert thr.token_ids == ref.token_ids and calls(thr) == calls(ref)


def test_lower_threshold_needs_fewer_forwards():
    runner = dllm_runner(sharp=40.0)
    forwards = [
        sum(
            calls(decode(runner, "dllm-threshold", p, threshold=t, cache="none"))
            for p in prompts(4)
        )
        for t in (1.0, 0.9, 0.5)
    ]
    assert forwards[0] > forwards[1] >= forwards[2]


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("shift", [True, False])
def test_cache_equals_no_cache_when_every_block_is_one_step(cache, shift):
    """Fast-dLLM rebuilds the cache at each block's first forward, which is a full forward: when
    each block is decoded in one step (threshold 0, or blocks of one token) the cache never
    serves a stale prefix and the outputs must be equal."""
    runner = dllm_runner(sharp=6.0, shift=shift)
    for prompt in prompts(4, seed=2):
        for options in (
            {"threshold": 0.0, "block_length": 4},
            {"threshold": 0.9, "block_length": 1},
        ):
            off = decode(runner, "dllm-threshold", prompt, cache="none", **options)
            on = decode(runner, "dllm-threshold", prompt, cache=cache, **options)
            assert on.token_ids == off.token_ids and calls(on) == calls(off)


def test_cache_is_approximate_but_close_otherwise():
    """Within a block the cached prefix is stale (the paper's approximation): count agreement."""
    runner = dllm_runner(sharp=6.0)
    agree = total = 0
    for prompt in prompts(6, seed=3):
        off = decode(runner, "dllm-threshold", prompt, cache="none", block_length=8)
        on = decode(runner, "dllm-threshold", prompt, cache="prefix", block_length=8)
        agree += sum(a == b for a, b in zip(on.token_ids, off.token_ids, strict=False))
        total += len(off.token_ids)
    assert agree / total > 0.5


# -- FreeDave ------------------------------------------------------------------------------------
FREEDAVE_SETTINGS = [
    {"block_length": 4, "tokens_per_step": 1, "drafts": 2},
    {"block_length": 8, "tokens_per_step": 1, "drafts": 4},
    {"block_length": 32, "tokens_per_step": 1, "drafts": 8},
    {"block_length": 8, "tokens_per_step": 2, "drafts": 3},
    {"block_length": 5, "tokens_per_step": 3, "drafts": 4},
]


@pytest.mark.parametrize("settings", FREEDAVE_SETTINGS)
@pytest.mark.parametrize(
    "model",
    [
        {"sharp": 1.0},
        {"sharp": 10.0},
        {"sharp": 10.0, "shift": False},
        {"sharp": 10.0, "eos_like": 20, "seed": 3},
    ],
)
def test_freedave_is_token_identical_to_the_reference(settings, model):
    runner = dllm_runner(**model)
    reference = {k: v for k, v in settings.items() if k != "drafts"}
    ref_calls = fd_calls = 0
    for prompt in prompts(10, seed=4):
        ref = decode(runner, "dllm-confidence", prompt, n=24, **reference)
        fd = decode(runner, "dllm-freedave", prompt, n=24, **settings)
        assert fd.token_ids == ref.token_ids, prompt
        assert fd.finish_reason == ref.finish_reason
        assert calls(fd) <= calls(ref)
        ref_calls += calls(ref)
        fd_calls += calls(fd)
    if model["sharp"] > 1:  # a confident denoiser's drafts verify: strictly fewer forwards
        assert fd_calls < ref_calls


def test_freedave_ends_on_eos_like_the_reference():
    runner = dllm_runner(sharp=10.0, eos_like=39, seed=3)
    ends = 0
    for prompt in prompts(10, seed=4):
        ref = decode(runner, "dllm-confidence", prompt, n=24, block_length=4)
        fd = decode(runner, "dllm-freedave", prompt, n=24, block_length=4)
        assert fd.token_ids == ref.token_ids
        ends += ref.finish_reason == "eos"
        if ref.finish_reason == "eos":
            assert ref.token_ids[-1] == EOS
    assert ends >= 1  # the fixture really produces EOS


def test_freedave_trace_counts_reproduced_steps():
    runner = dllm_runner(sharp=10.0)
    ref = decode(runner, "dllm-confidence", [4, 5, 6], block_length=8)
    fd = decode(runner, "dllm-freedave", [4, 5, 6], block_length=8, drafts=4)
    assert sum(s.canvas.reference_steps for s in fd.steps) == len(ref.steps)
    assert all(1 <= s.canvas.reference_steps <= 4 for s in fd.steps)
    assert calls(fd) == len(fd.steps) < len(ref.steps)  # one recorded step per forward
    assert decode(runner, "dllm-freedave", [4, 5, 6], block_length=8, drafts=1).token_ids == (
        ref.token_ids
    )
    assert fd.stats["dllm"]["forward_rows"] >= calls(fd)


# -- Prophet -------------------------------------------------------------------------------------
def test_prophet_never_committing_early_is_the_reference():
    runner = dllm_runner(sharp=6.0)
    high = {"early_threshold": 1e9, "mid_threshold": 1e9, "late_threshold": 1e9}
    for prompt in prompts(4):
        ref = decode(runner, "dllm-confidence", prompt, block_length=8)
        pro = decode(runner, "dllm-prophet", prompt, block_length=8, **high)
        assert pro.token_ids == ref.token_ids and calls(pro) == calls(ref)
        assert pro.stats["dllm"]["early_commit_step"] is None


def test_prophet_zero_threshold_commits_everything_after_one_forward():
    runner = dllm_runner(sharp=6.0)
    zero = {"early_threshold": 0.0, "mid_threshold": 0.0, "late_threshold": 0.0}
    result = decode(runner, "dllm-prophet", [4, 5, 6], n=16, block_length=8, **zero)
    assert calls(result) == 1 and len(result.token_ids) == 16
    assert result.stats["dllm"]["early_commit_step"] == 0
    from decbench.diffusion.runner import DiffusionRunner

    logits = DiffusionRunner.wrap(runner).denoise(torch.tensor([[4, 5, 6] + [MASK] * 16]), 3)
    assert result.token_ids == logits[0].argmax(-1).tolist()


def test_top2_gap_on_hand_made_logits():
    logits = torch.tensor([[5.0, 1.0, 0.0], [2.0, 3.0, 0.0], [9.0, 0.0, 0.0]])
    masked = torch.tensor([True, True, False])
    assert top2_gap(logits, masked) == pytest.approx((4.0 + 1.0) / 2)


# -- CreditDecoding ------------------------------------------------------------------------------
def test_credit_update_and_fusion_follow_the_paper():
    credit = torch.zeros(2, 3)
    log_probs = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))
    masked = torch.tensor([True, False])
    update_credit(credit, log_probs, masked, beta=0.5, gamma=0.5)
    assert torch.allclose(credit, torch.tensor([[0.5**0.5, 0, 0], [0, 0, 0]]))
    update_credit(credit, log_probs, masked, beta=0.5, gamma=0.5)
    assert credit[0, 0] == pytest.approx(0.5 * 0.5**0.5 + 0.5**0.5)
    fused = fuse(log_probs, credit, alpha=1.0)
    assert fused[0, 0] == pytest.approx(float(log_probs[0, 0] + torch.log1p(credit[0, 0])))
    assert torch.equal(fused[1], log_probs[1])  # no credit, no change


def test_credit_alpha_zero_is_threshold_decoding_and_credit_speeds_up():
    runner = dllm_runner(sharp=20.0)
    plain = credited = 0
    for prompt in prompts(4):
        thr = decode(runner, "dllm-threshold", prompt, threshold=0.9, cache="none")
        zero = decode(runner, "dllm-credit", prompt, threshold=0.9, alpha=0.0)
        assert zero.token_ids == thr.token_ids and calls(zero) == calls(thr)
        plain += calls(zero)
        credited += calls(decode(runner, "dllm-credit", prompt, threshold=0.9, alpha=2.0))
    assert credited < plain


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_a_plain_causal_lm_is_a_config_error(method):
    cls = get_decoder(method)
    with pytest.raises(ConfigError, match="not a masked-diffusion model"):
        cls(runner_for(tiny_llama()), cls.Options(), no_models_ctx())


@pytest.mark.parametrize(
    ("method", "options", "match"),
    [
        ("dllm-threshold", {"threshold": 1.5}, "threshold"),
        ("dllm-threshold", {"cache": "both"}, "prefix"),
        ("dllm-confidence", {"tokens_per_step": 0}, "tokens_per_step"),
        ("dllm-freedave", {"drafts": 0}, "drafts"),
        ("dllm-credit", {"beta": 0.0}, "beta"),
    ],
)
def test_bad_options_are_config_errors(method, options, match):
    cls = get_decoder(method)
    with pytest.raises(ConfigError, match=match):
        cls(dllm_runner(), cls.Options(**options), no_models_ctx())


def test_bad_block_length_is_a_config_error():
    with pytest.raises(ConfigError, match="block_length"):
        decode(dllm_runner(), "dllm-confidence", [3], block_length=0)


# -- every decoder respects its knob -------------------------------------------------------------
def _gaps(scale: float) -> dict[str, float]:
    return {
        "early_threshold": 7.5 * scale,
        "mid_threshold": 5.0 * scale,
        "late_threshold": 2.5 * scale,
    }


KNOBS = {  # method -> (knob settings from slowest to fastest, forwards of the fastest per block)
    "dllm-confidence": [{"tokens_per_step": k} for k in (1, 2, 4, 8)],
    "dllm-threshold": [{"threshold": t, "cache": "none"} for t in (1.0, 0.9, 0.7, 0.5, 0.0)],
    "dllm-credit": [{"threshold": t} for t in (1.0, 0.9, 0.7, 0.5, 0.0)],
    "dllm-prophet": [_gaps(s) for s in (1e9, 4.0, 1.0, 0.25, 0.0)],
    "dllm-freedave": [{"drafts": d} for d in (1, 2, 4, 8)],
}


@pytest.mark.parametrize("method", METHODS)
def test_every_decoder_respects_its_knob(method):
    """Along each method's main knob (the one compare --sweep moves), forwards never rise over a
    set of prompts, and the fastest setting reaches its floor: one forward per block (or, for
    Prophet, one forward in all: it commits the whole canvas at once)."""
    runner = dllm_runner(sharp=12.0)
    block_length, n = 8, 16
    totals = []
    for options in KNOBS[method]:
        totals.append(
            sum(
                calls(decode(runner, method, p, n=n, block_length=block_length, **options))
                for p in prompts(4, seed=3)
            )
        )
    assert totals == sorted(totals, reverse=True) and totals[0] > totals[-1], totals
    floor = {"dllm-prophet": 1, "dllm-freedave": None}.get(method, n // block_length)
    if floor is not None:
        assert totals[-1] == 4 * floor
    if method == "dllm-freedave":  # more drafts, fewer forwards, the same tokens
        for p in prompts(4, seed=3):
            ref = decode(runner, "dllm-confidence", p, n=n, block_length=block_length)
            fast = decode(runner, method, p, n=n, block_length=block_length, drafts=8)
            assert fast.token_ids == ref.token_ids
