"""Stop rules (EOS, max_new_tokens, stop strings) are applied once, in GenerationState, so every
decoder stops at exactly the same token."""

from __future__ import annotations

import pytest

from decbench.profiles import method_profile
from decbench.run import open_session


@pytest.mark.model
@pytest.mark.parametrize("method", ["greedy", "pld", "speculative"])
def test_stop_string_cuts_every_method_at_the_same_token(default_session, method):
    prompt = "Name the four seasons of the year, one per line."
    full = default_session.generate(prompt)
    words = full.text.split()
    assert len(words) >= 4, full.text
    stop = words[len(words) // 2]  # a word from the middle of the greedy output
    cut = full.text.index(stop) + len(stop)
    overrides = [("generation", "max_new_tokens", 32), ("generation", "stop", [stop])]
    session = open_session(method_profile(method, overrides), target=default_session.target)
    result = session.generate(prompt)
    assert result.finish_reason == "stop"
    assert full.token_ids[: len(result.token_ids)] == result.token_ids
    assert stop in result.text
    assert len(result.text) < cut + 12  # stopped at the token completing the stop string


@pytest.mark.model
def test_raw_skips_the_chat_template(default_session):
    templated = default_session.encode("Hello")
    raw = default_session.encode("Hello", raw=True)
    assert len(raw) < len(templated)
    assert default_session.target.tokenizer.decode(raw) == "Hello"


@pytest.mark.model
def test_system_message_goes_into_the_template(default_session):
    profile = method_profile("greedy", [("generation", "system", "You are terse.")])
    session = open_session(profile, target=default_session.target)
    text = session.target.tokenizer.decode(session.encode("Hi"))
    assert "You are terse." in text
    assert "helpful AI assistant" not in text
