"""EAGLE: the draft layer's cache gives what one full forward gives, the chain is the draft's
greedy extrapolation, the proposer feeds the target's own features row for row, token identity
with greedy on tiny models, lossless sampling, bad input, and MAT > 1 with identical tokens on
the default model with the shipped draft."""

from __future__ import annotations

import pytest
import torch

from decbench.decoders.speculative.eagle import Eagle, EagleOptions
from decbench.drafts.eagle import EagleChain, EagleDraft, EagleShape, load_eagle, save_eagle
from decbench.errors import ConfigError
from decbench.settings import SamplingSettings
from tests.conftest import greedy_ids, make_request, no_models_ctx, repetitive_prompts
from tests.test_tree import sampling_matches_target

SHAPE = EagleShape(hidden=32, heads=4, kv_heads=2, head_dim=8, intermediate=48)


def random_draft(shape: EagleShape = SHAPE, subset=None, seed: int = 0) -> EagleDraft:
    torch.manual_seed(seed)
    draft = EagleDraft(shape, subset)
    with torch.no_grad():
        for p in draft.parameters():
            p.normal_(0.0, 0.3)
    return draft.eval()


def eagle_folder(tmp_path, shape: EagleShape = SHAPE, subset=None, seed: int = 0):
    folder = tmp_path / f"eagle-{seed}-{shape.hidden}-{subset is not None}"
    folder.mkdir()
    save_eagle(random_draft(shape, subset, seed), folder, {"target": "tiny"}, dtype=torch.float32)
    return folder


def trained_folder(runner, tmp_path, steps: int = 200, vocab: int | None = None):
    """A draft trained for a second on the runner's own greedy continuations (eagle_loss), so
    that drafts do get accepted: an untrained draft almost never guesses right."""
    from decbench.train.eagle import eagle_loss

    prompts = repetitive_prompts(16, seed=11, **({"vocab": vocab} if vocab else {}))
    seqs = [p + greedy_ids(runner, p, 32) for p in prompts]
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[True] * len(s) + [False] * (width - len(s)) for s in seqs])
    with torch.no_grad():
        out = runner.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    torch.manual_seed(0)
    draft = EagleDraft(shape_of(runner))
    optimizer = torch.optim.AdamW(draft.parameters(), lr=3e-3)
    embed = runner.model.get_input_embeddings().weight.detach()
    rows = runner.model.get_output_embeddings().weight.detach()
    for _ in range(steps):
        loss, _ = eagle_loss(draft, embed, rows, ids, out.hidden_states[-1], mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    folder = tmp_path / "trained-eagle"
    folder.mkdir()
    save_eagle(draft.eval(), folder, {"target": "tiny"}, dtype=torch.float32)
    return folder


def shape_of(runner) -> EagleShape:
    return EagleShape.of(runner.model.config)


def eagle_for(runner, folder, **options) -> Eagle:
    return Eagle(runner, EagleOptions(draft=str(folder), **options), no_models_ctx())


# -- the draft layer ----------------------------------------------------------------------------
def test_cached_rows_give_what_one_full_forward_gives():
    draft = random_draft()
    embeds, features = torch.randn(1, 7, 32), torch.randn(1, 7, 32)
    with torch.no_grad():
        full, _ = draft(embeds, features, torch.arange(7))
        past, outs = None, []
        for a, b in ((0, 3), (3, 4), (4, 7)):  # several rows, one row, several rows again
            out, past = draft(embeds[:, a:b], features[:, a:b], torch.arange(a, b), past)
            outs.append(out)
    assert past[0].shape == (1, 2, 7, 8)
    assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5)


def test_chain_feeds_its_own_features_back_and_keeps_only_real_rows():
    draft = random_draft()
    embed, rows = torch.randn(20, 32), torch.randn(20, 32)
    features, tokens = torch.randn(5, 32), [3, 7, 1, 9, 4]
    chain = EagleChain(draft, embed, rows)
    chain.extend(features[:2], tokens[:2])
    chain.extend(features[2:], tokens[2:])
    guess = chain.chain(3)
    assert chain.length == 5 and chain.past[0].shape[2] == 5  # the guesses left no rows behind
    feats, ids = features.clone(), list(tokens)  # the same chain, by full forwards
    with torch.no_grad():
        for step in range(3):
            out, _ = draft(embed[ids][None], feats[None], torch.arange(len(ids)))
            predicted = out[0, -1]
            token = int((predicted @ rows.t()).argmax())
            assert token == guess[step]
            feats, ids = torch.cat([feats, predicted[None]]), [*ids, token]
    assert chain.chain(3) == guess  # drafting twice from the same rows gives the same chain


def test_training_passes_replay_the_chain_steps_decoding_runs():
    """Pass s+1 at row i = chain step s+1 after the real rows up to i - s, with true tokens."""
    from decbench.train.eagle import chain_passes

    draft = random_draft()
    embeds, features = torch.randn(1, 8, 32), torch.randn(1, 8, 32)
    with torch.no_grad():
        passes = chain_passes(draft, embeds, features, 3)
        for i in range(2, 8):
            for s in (1, 2):
                first = i - s  # the last real row
                out, past = draft(
                    embeds[:, : first + 1], features[:, : first + 1], torch.arange(first + 1)
                )
                feature = out[:, -1:]
                for step in range(1, s + 1):
                    at = first + step
                    out, past = draft(embeds[:, at : at + 1], feature, torch.tensor([at]), past)
                    feature = out
                assert torch.allclose(passes[s][0, i], feature[0, 0], rtol=1e-4, atol=1e-3), (i, s)


def test_subset_maps_draft_positions_to_token_ids(tmp_path):
    folder = eagle_folder(tmp_path, subset=torch.tensor([1, 5, 9]))
    draft, record = load_eagle(folder)
    assert draft.subset.tolist() == [1, 5, 9] and record["vocab_subset"] == 3
    assert draft.rows(torch.randn(12, 32)).shape == (3, 32)
    assert draft.token_ids(torch.tensor([0, 2])).tolist() == [1, 9]
    assert record["shape"]["kv_heads"] == 2


def test_the_proposer_feeds_the_targets_own_features(tiny_runner, tmp_path, monkeypatch):
    """Every row the chain gets is (the target's feature at position i, token i+1), as a fresh
    forward over the committed tokens gives them, and rows arrive in order, none missing."""
    eagle = eagle_for(tiny_runner, trained_folder(tiny_runner, tmp_path), k=4)
    fed: list[tuple[int, torch.Tensor, list[int]]] = []
    real = EagleChain.extend

    def extend(self, features, next_tokens):
        fed.append((self.length, features.clone(), list(next_tokens)))
        real(self, features, next_tokens)

    monkeypatch.setattr(EagleChain, "extend", extend)
    accepted = 0
    for prompt in repetitive_prompts(3):
        fed.clear()
        result = eagle.generate(make_request(prompt, 24))
        accepted += result.stats["accepted"]
        tokens = prompt + result.token_ids
        out = tiny_runner.model(input_ids=torch.tensor([tokens]), output_hidden_states=True)
        hidden = out.hidden_states[-1][0]
        start = 0
        for length, features, next_tokens in fed:
            assert length == start
            n = len(next_tokens)
            assert torch.allclose(features, hidden[start : start + n], atol=1e-4)
            assert next_tokens == tokens[start + 1 : start + n + 1]
            start += n
    assert accepted > 0  # some steps accepted drafts, so multi-row feedback was checked


# -- lossless -----------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 8])
def test_trained_eagle_equals_greedy(tiny_runner, tmp_path, k):
    eagle = eagle_for(tiny_runner, trained_folder(tiny_runner, tmp_path), k=k)
    accepted = 0
    for prompt in repetitive_prompts(6):
        result = eagle.generate(make_request(prompt, 24))
        assert result.token_ids == greedy_ids(tiny_runner, prompt, 24)
        accepted += result.stats["accepted"]
    assert accepted > 0


def test_random_eagle_with_a_subset_equals_greedy(tiny_runner, tmp_path):
    subset = torch.arange(0, 48, 2)
    eagle = eagle_for(tiny_runner, eagle_folder(tmp_path, shape_of(tiny_runner), subset), k=5)
    for prompt in repetitive_prompts(6):
        result = eagle.generate(make_request(prompt, 24))
        assert result.token_ids == greedy_ids(tiny_runner, prompt, 24)
        drafted = {t for step in result.steps for t in step.drafted}
        assert drafted <= set(subset.tolist())  # the draft only proposes subset tokens


def test_eagle_stops_at_eos_and_budget(tiny_runner, tmp_path):
    eagle = eagle_for(tiny_runner, eagle_folder(tmp_path, shape_of(tiny_runner)), k=4)
    for n in (1, 2, 5):
        result = eagle.generate(make_request([2, 3, 4], n))
        assert result.token_ids == greedy_ids(tiny_runner, [2, 3, 4], n)


def test_sampling_preserves_the_distribution(tmp_path):
    def decoder_for(target):
        return eagle_for(target, trained_folder(target, tmp_path, vocab=5), k=3)

    sampling_matches_target(decoder_for, samples=1200)


def test_bad_options_and_drafts_are_config_errors(tiny_runner, tmp_path):
    folder = eagle_folder(tmp_path, shape_of(tiny_runner))
    with pytest.raises(ConfigError, match=r"method\.k"):
        eagle_for(tiny_runner, folder, k=0)
    with pytest.raises(ConfigError, match="distill --kind eagle"):
        eagle_for(tiny_runner, tmp_path)
    other = EagleShape(hidden=16, heads=2, kv_heads=2, head_dim=8, intermediate=32)
    with pytest.raises(ConfigError, match="hidden size of 16"):
        eagle_for(tiny_runner, eagle_folder(tmp_path, other, seed=1))


# -- the default model --------------------------------------------------------------------------
@pytest.mark.model
def test_eagle_on_the_default_model(default_session):
    from decbench.decoders.base import Request
    from decbench.decoders.greedy import Greedy
    from decbench.settings import GenerationSettings
    from tests.test_tree import DEFAULT_MODEL_PROMPT

    ids = default_session.encode(DEFAULT_MODEL_PROMPT)
    request = Request("", ids, GenerationSettings(max_new_tokens=40), SamplingSettings())
    greedy = Greedy(default_session.target, Greedy.Options(), default_session.decoder.ctx)
    expected = greedy.generate(request).token_ids
    eagle = Eagle(default_session.target, EagleOptions(), default_session.decoder.ctx)
    result = eagle.generate(request)
    assert result.token_ids == expected
    assert result.stats["mat"] > 1.0
