"""Every registered decoder on a CUDA device, on the default model (skipped without a GPU; run
them with `bash bench/gpu_check.sh` on a machine that has one).

Each decoder runs from its built-in profile (or its defaults) with `backend.device = "cuda"`:
greedy, then sampled where it samples. Lossless methods must give greedy's tokens on the same
device and dtype (a divergence is allowed only at a near-tie of the target, judged as `compare`
judges it). This is the test that the recycling table (a CPU table indexed by CUDA tensors)
would have failed."""

from __future__ import annotations

import os

import pytest
import torch

from decbench.decoders.registry import all_decoders
from decbench.errors import ConfigError, ModelError
from decbench.models import BUILT, converted_dir
from decbench.profiles import find_profile, load_profile, method_profile
from decbench.run import open_session

pytestmark = [pytest.mark.cuda, pytest.mark.model]

PROMPTS = ("Name three colors.", "Summarize: the cat sat on the mat because the mat was warm.")
DTYPES = ("float32", "bfloat16")
NEAR_TIE = 1e-3
DEVICE = os.environ.get("DECBENCH_TEST_DEVICE", "cuda")  # "cpu" checks this test itself


def profile_for(method: str, dtype: str, temperature: float | None = None, extra: tuple = ()):
    """The method's built-in profile (or its defaults) on the device, at the profile's own
    temperature unless one is given, with `extra` overrides."""
    overrides = [
        ("backend", "device", DEVICE),
        ("backend", "dtype", dtype),
        ("generation", "max_new_tokens", 24),
        *extra,
    ]
    if temperature is not None:
        overrides.append(("sampling", "temperature", temperature))
    try:
        path = find_profile(method)
    except ConfigError:  # no built-in profile of that name: the method's defaults
        return method_profile(method, overrides)
    return load_profile(str(path), overrides)


def names() -> list[str]:
    return [cls.spec.name for cls in all_decoders()]


def needs_built_model(method: str) -> bool:
    cls = next(c for c in all_decoders() if c.spec.name == method)
    return cls.spec.diffusion and not (converted_dir(next(iter(BUILT))) / "config.json").is_file()


_greedy: dict[str, tuple] = {}


def greedy_of(dtype: str):
    if dtype not in _greedy:
        session = open_session(profile_for("greedy", dtype, temperature=0.0))
        _greedy[dtype] = (session, {p: session.generate(p) for p in PROMPTS})
    return _greedy[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", names())
def test_decoder_runs_on_cuda(method, dtype):
    if needs_built_model(method):
        pytest.skip(f"{method} needs the dLLM built by `make dllm`")
    try:
        session = open_session(profile_for(method, dtype))
    except ModelError as e:
        pytest.skip(f"{method}: {e}")
    assert session.target.device.type == DEVICE
    base_session, base = greedy_of(dtype)
    spec, greedy = session.decoder.spec, session.profile.sampling.greedy
    lossless = session.decoder.is_lossless(session.profile.options) and not spec.diffusion
    for prompt in PROMPTS:
        result = session.generate(prompt)
        assert result.token_ids, f"{method} generated nothing"
        if lossless and greedy:
            check_exact(base_session, prompt, result.token_ids, base[prompt].token_ids, method)
    if spec.samples and not spec.diffusion:
        runs = []
        for _ in range(2):  # fresh sessions: some proposers (recycling) learn across prompts
            profile = profile_for(method, dtype, temperature=0.8)
            runs.append(open_session(profile, target=session.target).generate(PROMPTS[0]))
        assert runs[0].token_ids == runs[1].token_ids  # seeded: reproducible on the device


CONSTRAINED = [cls.spec.name for cls in all_decoders() if cls.spec.constraints]
REGEX = (  # short enough to finish within max_new_tokens even when sampled
    ("constraint", "kind", "grammar"),
    ("constraint", "regex", r"(Red|Green|Blue)(, (Red|Green|Blue)){0,2}\."),
)


@pytest.mark.parametrize("method", CONSTRAINED)
def test_constrained_decoder_runs_on_cuda(method, tmp_path):
    """Constraint masks are host tensors (llguidance's bitmask, the CSR trie) and meet the
    device's logits in sampler.constrain: every method that masks runs under a regex and an
    allow-list on the device, satisfies them, and (lossless, greedy) gives constrained greedy's
    tokens."""
    allow = tmp_path / "allow.txt"
    allow.write_text("Red, green and blue.\nCyan.\n")
    cases = {
        "regex": REGEX,
        "allow": (("constraint", "kind", "allow"), ("constraint", "file", str(allow))),
    }
    for name, extra in cases.items():
        base = open_session(profile_for("greedy", "float32", 0.0, extra))
        try:
            session = open_session(profile_for(method, "float32", None, extra), target=base.target)
        except ModelError as e:
            pytest.skip(f"{method}: {e}")
        want = base.generate(PROMPTS[0])
        result = session.generate(PROMPTS[0])
        assert result.constraint["satisfied"], (method, name, result.text)
        lossless = session.decoder.is_lossless(session.profile.options)
        if lossless and session.profile.sampling.greedy:
            check_exact(base, PROMPTS[0], result.token_ids, want.token_ids, f"{method} {name}")


def check_exact(session, prompt: str, got: list[int], want: list[int], method: str) -> None:
    """Identical, or different only after a near-tie of the target's top two logits."""
    if got == want:
        return
    i = next((j for j, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
    assert i is not None, f"{method}: one output is a prefix of the other"
    ids = session.encode(prompt) + want[:i]
    with torch.inference_mode():
        logits = session.target.prefill(torch.tensor([ids])).logits[0, -1].float()
    session.target.reset()
    gap = (logits[want[i]] - logits[got[i]]).item()
    assert gap < NEAR_TIE, f"{method} diverged at token {i} with a logit gap of {gap:.4g}"
