"""calibrate-entropy: the entropies of greedy runs against an independent recomputation on a
tiny model, the quantile table, an empty selection refused, and the command end to end."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from decbench.calibrate import calibrate_entropy, greedy_entropies
from decbench.cli.app import main
from decbench.decoders.greedy import Greedy
from decbench.errors import ConfigError
from decbench.profiles import method_profile
from decbench.run import Session
from decbench.suites.base import Sample, Suite
from tests.conftest import greedy_ids, no_models_ctx, runner_for, tiny_llama


class TinySession(Session):
    """A session on a tiny tokenizer-less model: a prompt's text is its ids, space-separated."""

    def encode(self, prompt: str, raw: bool = False) -> list[int]:
        return [int(word) for word in prompt.split()]


@pytest.fixture
def session() -> TinySession:
    model = tiny_llama(seed=0, layers=2)
    model.generation_config.eos_token_id = None
    target = runner_for(model)
    profile = method_profile("greedy", [("generation", "max_new_tokens", 6)])
    return TinySession(profile, target, Greedy(target, Greedy.Options(), no_models_ctx()))


def suite(*prompts: tuple[str, str]) -> Suite:
    samples = [Sample(f"s{i}", category, (text,)) for i, (category, text) in enumerate(prompts)]
    return Suite("tiny", "tiny prompts", "builtin", samples)


def test_entropies_are_those_of_the_greedy_steps(session):
    prompt = [3, 4, 5, 6, 7]
    values = greedy_entropies(session, " ".join(map(str, prompt)))
    tokens = greedy_ids(session.target, prompt, 6)
    with torch.inference_mode():
        logits = session.target.model(torch.tensor([prompt + tokens[:-1]])).logits[0].float()
    log_p = logits[len(prompt) - 1 :].log_softmax(-1)
    expected = (-(log_p.exp() * log_p).sum(-1) / math.log(2)).tolist()
    assert values == pytest.approx(expected, abs=1e-4)


def test_calibration_table(session):
    result = calibrate_entropy(session, suite(("a", "3 4 5"), ("a", "9 8 7 6"), ("b", "10 11")))
    assert result.steps == 18 and result.prompts == 3
    assert result.by_category["a"]["steps"] == 12 and result.by_category["b"]["steps"] == 6
    values = list(result.quantiles.values())
    assert list(result.quantiles) == ["p50", "p75", "p90", "p95", "p99"]
    assert values == sorted(values) and values[0] > 0
    assert result.to_dict()["schema"] == "decbench/entropy-calibration/v1"


def test_empty_selection_is_refused(session):
    with pytest.raises(ConfigError, match="no greedy steps"):
        calibrate_entropy(session, suite())


@pytest.mark.model
def test_command_prints_one_json_document(monkeypatch, capsys):
    args = ["calibrate-entropy", "--category", "code-edit", "--limit", "1", "-n", "8", "--json"]
    monkeypatch.setattr(sys, "argv", ["decbench", *args])
    main()
    record = json.loads(capsys.readouterr().out)
    assert record["schema"] == "decbench/entropy-calibration/v1"
    assert record["suite"] == "spec-bench-mini" and record["steps"] <= 8
    assert record["quantiles"]["p50"] <= record["quantiles"]["p90"]
