"""model.device_map: a target loaded through accelerate's big-model inference runs the same
decoders. Here there is only a CPU, so "auto" places every layer on it; on a machine with GPUs the
same profile spreads the layers over them (bench/gpu_check.sh)."""

from __future__ import annotations

import pytest

from decbench.errors import ConfigError
from decbench.profiles import method_profile
from decbench.run import open_session

PROMPT = "Summarize: the cat sat on the mat because the mat was warm and the floor was cold."


def session(method: str, *extra):
    overrides = [("generation", "max_new_tokens", 24), *extra]
    return open_session(method_profile(method, overrides))


def test_bad_placement_is_refused():
    with pytest.raises(ConfigError, match=r"model\.device_map: 'everywhere' is not one of auto"):
        session("greedy", ("model", "device_map", "everywhere"))
    with pytest.raises(ConfigError, match=r"model\.max_memory applies with model\.device_map"):
        session("greedy", ("model", "max_memory", {"cpu": "1GiB"}))
    with pytest.raises(ConfigError, match="max_memory: expected a table"):
        session("greedy", ("model", "max_memory", "1GiB"))


@pytest.mark.model
@pytest.mark.parametrize("method", ["greedy", "pld", "recycling"])
def test_layers_offloaded_to_disk_give_the_same_tokens(method, default_session):
    """300 MB of CPU memory holds about half of the 538 MB model: accelerate puts the rest on
    disk and streams it in layer by layer, and the decoders run unchanged."""
    placed = session(
        method, ("model", "device_map", "auto"), ("model", "max_memory", {"cpu": "300MB"})
    )
    placement = set(placed.target.model.hf_device_map.values())
    assert placement == {"cpu", "disk"}
    want = default_session.generate(PROMPT).token_ids[:24]
    assert placed.generate(PROMPT).token_ids == want
