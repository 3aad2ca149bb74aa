"""The drafts that ship with decbench for the default model: they load by alias, record how they
were made, and the profiles that use them give greedy's tokens with MAT > 1."""

from __future__ import annotations

import json

import pytest

from decbench.models import SHIPPED, artifact_path
from decbench.settings import SamplingSettings

PROFILES = {
    "eagle": "smollm2-135m-eagle",
    "medusa": "smollm2-135m-medusa",
    "speculative": "smollm2-135m-student",
}


@pytest.mark.parametrize("alias", sorted(SHIPPED))
def test_artifact_records_its_recipe_and_stays_small(alias):
    folder = artifact_path(alias)
    record = json.loads((folder / "distill.json").read_text())
    assert record["target"] == "smollm2-135m"
    assert record["command"][:2] == ["decbench", "distill"] and "seed" in record
    assert record["data"]["sha256"] and record["heldout"]["mat"] > 1.0
    assert not (folder / "checkpoint.pt").exists()
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 30e6


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_built_in_profiles_use_the_shipped_artifacts(profile):
    from decbench.profiles import load_profile

    options = load_profile(profile).options
    assert PROFILES[profile] in (getattr(options, "heads", None), getattr(options, "draft", None))


@pytest.mark.model
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_shipped_profiles_are_greedy_identical_with_mat_above_one(profile):
    from decbench.decoders.base import Request
    from decbench.decoders.greedy import Greedy
    from decbench.profiles import load_profile
    from decbench.run import open_session
    from decbench.settings import GenerationSettings
    from tests.test_tree import DEFAULT_MODEL_PROMPT

    session = open_session(load_profile(profile))
    ids = session.encode(DEFAULT_MODEL_PROMPT)
    request = Request("", ids, GenerationSettings(max_new_tokens=40), SamplingSettings())
    greedy = Greedy(session.target, Greedy.Options(), session.decoder.ctx)
    expected = greedy.generate(request).token_ids
    result = session.decoder.generate(request)
    assert result.token_ids == expected
    assert result.stats["mat"] > 1.0
