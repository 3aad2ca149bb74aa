"""Declared capabilities act: MethodSpec.samples and MethodSpec.argmax are enforced once, for
every registered method, before any model loads (run.check_profile, which open_session and
compare's open_contenders call), with one message each; needs_draft makes the registry demand
a `draft` option and check_profile refuse a draft name that can name no model."""

from __future__ import annotations

import pytest

from decbench import run
from decbench.backends.capabilities import BACKENDS
from decbench.compare.harness import open_contenders
from decbench.decoders.base import Decoder, MethodSpec
from decbench.decoders.registry import all_decoders, register_decoder
from decbench.errors import ConfigError
from decbench.profiles import Profile, build
from tests.test_options import REQUIRED

DETERMINISTIC = [cls.spec.name for cls in all_decoders() if not cls.spec.samples]
SAMPLING_ONLY = [cls.spec.name for cls in all_decoders() if not cls.spec.argmax]
ALL = [cls.spec.name for cls in all_decoders()]


def profile(method: str, temperature: float) -> Profile:
    """Defaults for `method` on a backend that can run it."""
    spec = next(cls.spec for cls in all_decoders() if cls.spec.name == method)
    backend = next(name for name, has in BACKENDS.items() if spec.requires <= has)
    raw = {
        "method": {"name": method, **REQUIRED.get(method, {})},
        "backend": {"name": backend},
        "sampling": {"temperature": temperature},
    }
    return build(raw, f"method:{method}")


def test_the_lists_are_not_empty():
    assert {"greedy", "beam", "grid-beam", "contrastive", "momentum", "hf-greedy"} <= set(
        DETERMINISTIC
    )
    assert {"dllm-confidence", "llamacpp-greedy"} <= set(DETERMINISTIC)
    assert set(SAMPLING_ONLY) == {"sample", "hf-sample"}


@pytest.mark.parametrize("method", DETERMINISTIC)
def test_a_deterministic_method_refuses_a_temperature_before_loading(method, no_loading):
    with pytest.raises(ConfigError) as info:
        run.open_session(profile(method, 0.8))
    assert str(info.value) == (
        f"method '{method}' is deterministic and does not sample (sampling.temperature = 0.8); "
        "set the temperature to 0 or choose a sampling method such as sample or speculative"
    )


@pytest.mark.parametrize("method", SAMPLING_ONLY)
def test_a_sampling_method_refuses_temperature_zero_before_loading(method, no_loading):
    with pytest.raises(ConfigError, match=rf"method '{method}' samples: it needs sampling\."):
        run.open_session(profile(method, 0.0))


@pytest.mark.parametrize("method", ALL)
def test_every_method_passes_the_check_at_a_temperature_it_honours(method):
    spec = next(cls.spec for cls in all_decoders() if cls.spec.name == method)
    if spec.samples:
        run.check_profile(profile(method, 0.8))
    if spec.argmax:
        run.check_profile(profile(method, 0.0))


def test_compare_refuses_before_loading_any_contender(no_loading):
    profiles = [profile("greedy", 0.0), profile("beam", 0.7)]
    with pytest.raises(ConfigError, match="method 'beam' is deterministic"):
        open_contenders(["greedy", "beam"], profiles, progress=lambda _msg: None)


NEEDS_DRAFT = [cls.spec.name for cls in all_decoders() if cls.spec.needs_draft]


@pytest.mark.parametrize("draft", ["", "  ", "self:layer=4", "self:int3"])
@pytest.mark.parametrize("method", NEEDS_DRAFT)
def test_a_draft_that_names_no_model_is_refused_before_loading(method, draft, no_loading):
    prof = profile(method, 0.0)
    prof.options.draft = draft
    with pytest.raises(ConfigError, match=r"method\.draft"):
        run.open_session(prof)


def test_needs_draft_covers_the_draft_model_methods():
    assert {"speculative", "spectr", "rsd", "rsd-s", "ead", "hf-assisted"} == set(NEEDS_DRAFT)


def test_the_registry_refuses_needs_draft_without_a_draft_option():
    class NoDraft(Decoder):
        spec = MethodSpec(name="no-draft", summary="", paper="", lossless=True, needs_draft=True)

        def generate(self, request):
            raise NotImplementedError

    with pytest.raises(ValueError, match="'no-draft' needs_draft but has no `draft` option"):
        register_decoder(NoDraft)
