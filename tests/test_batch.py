"""Batch > 1 (issue 23): ragged batches on both runners, every batching method token-identical
to its batch-1 runs, finished rows leaving the batch, and methods that do not batch refusing.

The ragged property test drives RaggedBatch by hand: random prompts of different lengths, then
steps where every row verifies its own random chain or tree and keeps a random accepted prefix or
path; after every step, each row's logits equal those of a fresh single-row run of that row's
committed tokens (plus its block). A broken rollback (one row's rejected tokens left valid) is
shown to fail it."""

from __future__ import annotations

import random

import pytest
import torch

from decbench.backends.ragged import RaggedBatch, RowBlock, chain_block
from decbench.backends.runner import ModelRunner
from decbench.backends.static import StaticRunner
from decbench.decoders.registry import get_decoder
from decbench.decoders.speculative import tree
from decbench.errors import ConfigError
from decbench.settings import SamplingSettings
from tests.conformance import assert_batch_equals_single, batching_methods, build
from tests.conftest import make_request, tiny_llama

TOLERANCE = 1e-4  # float32 sums over a different number of masked slots (measured ~1e-7)
NINE = {"greedy", "sample", "pld", "speculative", "lookahead", "recycling", "aded", "medusa"}


def single_logits(model, tokens: list[int], block: RowBlock) -> torch.Tensor:
    """[n, vocab] a fresh batch-1 runner's logits for `block` after `tokens`."""
    runner = ModelRunner(model)
    runner.prefill(torch.tensor([tokens]))
    mask = block.mask[None]
    positions = torch.tensor([block.positions])
    return runner.forward(torch.tensor([block.ids]), positions, mask).logits[0]


def random_block(rng: random.Random, pending: int, length: int, vocab: int) -> RowBlock:
    """A random chain or tree (with distinct siblings not required: only logits are checked)."""
    size = rng.randint(0, 6)
    tokens = [rng.randrange(2, vocab) for _ in range(size)]
    if rng.random() < 0.5:
        return chain_block([pending, *tokens], length)
    parents = [rng.randrange(-1, i) for i in range(size)]
    draft = tree.Draft(tokens, None, parents) if size else tree.Draft([])
    if not size:
        return chain_block([pending], length)
    block = tree.flatten(draft, pending, length)
    return RowBlock(block.ids[0].tolist(), block.positions[0].tolist(), block.mask[0])


def kept_entries(rng: random.Random, block: RowBlock) -> list[int]:
    """A random accepted path of the block: the pending token plus a chain of descendants."""
    kept = [0]
    while True:
        here = kept[-1]
        kids = [
            j
            for j in range(here + 1, len(block.ids))
            if block.mask[j, here] and int(block.mask[j].sum()) == int(block.mask[here].sum()) + 1
        ]
        if not kids or rng.random() < 0.3:
            return kept
        kept.append(rng.choice(kids))


def run_ragged(runner: ModelRunner, model, seed: int, steps: int = 6) -> float:
    """Random ragged steps on `runner`; returns the largest logit difference from single runs."""
    rng = random.Random(seed)
    vocab = runner.vocab_size
    seqs = [[rng.randrange(2, vocab) for _ in range(rng.randint(1, 12))] for _ in range(3)]
    batch = RaggedBatch(runner)
    out = batch.prefill([s[:-1] if len(s) > 1 else s for s in seqs], all_logits=True)
    # the rows' caches hold all but the pending (last) token; prompts of length 1 hold it
    worst = 0.0
    for b, s in enumerate(seqs):
        ctx = s[:-1] if len(s) > 1 else s
        alone = ModelRunner(model).prefill(torch.tensor([ctx]), all_logits=True).logits[0]
        worst = max(worst, float((out.logits[b, -len(ctx) :] - alone).abs().max()))
    seqs = [s if len(s) > 1 else [*s, s[0]] for s in seqs]
    for step in range(steps):
        lengths = batch.lengths
        assert lengths == [len(s) - 1 for s in seqs]
        blocks = [random_block(rng, s[-1], n, vocab) for s, n in zip(seqs, lengths, strict=True)]
        out = batch.forward(blocks)
        width = out.logits.shape[1]
        for b, (s, block) in enumerate(zip(seqs, blocks, strict=True)):
            alone = single_logits(model, s[:-1], block)
            got = out.logits[b, : len(block.ids)]
            worst = max(worst, float((got - alone).abs().max()))
            kept = kept_entries(rng, block)
            batch.keep(b, width, kept)
            s.extend(block.ids[i] for i in kept[1:])
            s.append(rng.randrange(2, vocab))  # the bonus token: the next pending one
        batch.trim()
        if step == 3:
            batch.compact()
        if step == 4 and len(seqs) > 1:  # the middle row finishes and leaves
            batch.select([0, 2])
            seqs = [seqs[0], seqs[2]]
    return worst


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["eager", "static"])
def test_ragged_rows_equal_single_runs(kind, seed):
    model = tiny_llama(seed=seed)
    runner = ModelRunner(model) if kind == "eager" else StaticRunner(model, compile=False, pad=True)
    assert run_ragged(runner, model, seed) < TOLERANCE


def test_a_forgotten_rollback_is_caught(monkeypatch):
    """The property test fails when one row's rejected entries stay valid."""
    real = RaggedBatch.keep

    def forgets_row_one(self, row, width, kept):
        if row != 1:
            real(self, row, width, kept)

    monkeypatch.setattr(RaggedBatch, "keep", forgets_row_one)
    model = tiny_llama(seed=1)
    with pytest.raises(AssertionError):
        assert run_ragged(ModelRunner(model), model, seed=1) < TOLERANCE


def test_the_nine_lossless_methods_batch():
    assert NINE | {"eagle"} <= {cls.spec.name for cls in batching_methods()}


@pytest.mark.parametrize("method", sorted(NINE | {"eagle"}))
def test_batch_equals_single(method, tiny_runner, tmp_path):
    """Rows of three prompts of different lengths and budgets, on every tiny runner family."""
    cls = get_decoder(method)
    sampling = SamplingSettings(temperature=0.8, top_k=8, seed=3) if method == "sample" else None
    counter = iter(range(100))

    def fresh():
        folder = tmp_path / f"f{next(counter)}"
        folder.mkdir()
        return build(cls, tiny_runner, folder)

    assert_batch_equals_single(fresh(), fresh, sampling=sampling)


@pytest.mark.parametrize("method", ["pld", "recycling", "speculative"])
def test_batch_equals_single_under_sampling(method, tmp_path):
    """Each row draws from its own generator, seeded as at batch 1: same tokens. (Recycling's
    default `persist` shares one matrix between the rows, so their drafts, and with them the
    draws, differ from batch 1's while staying lossless; per-request matrices draft as alone.)"""
    runner = ModelRunner(tiny_llama())
    cls = get_decoder(method)
    counter = iter(range(100))
    options = {"persist": False} if method == "recycling" else {}

    def fresh():
        folder = tmp_path / f"f{next(counter)}"
        folder.mkdir()
        return build(cls, runner, folder, **options)

    sampling = SamplingSettings(temperature=0.9, top_p=0.9, seed=11)
    assert_batch_equals_single(fresh(), fresh, sampling=sampling)


@pytest.mark.parametrize("method", ["greedy", "pld", "recycling"])
def test_a_row_that_ends_on_step_one_leaves(method, tmp_path, monkeypatch):
    """Row 1's first token is declared EOS: it finishes at once with one token, leaves the
    batch, and the other rows still equal their single runs."""
    from tests.conformance import BATCH_PROMPTS, greedy_ids

    runner = ModelRunner(tiny_llama())
    eos = greedy_ids(runner, BATCH_PROMPTS[1], 1)[0]
    others = [greedy_ids(runner, p, 20) for p in (BATCH_PROMPTS[0], BATCH_PROMPTS[2])]
    assert all(eos not in ids for ids in others)  # the other rows never meet it
    monkeypatch.setattr(ModelRunner, "eos_token_ids", property(lambda _self: [eos]))
    batches: list[int] = []
    real = RaggedBatch.forward

    def watch(self, blocks, hidden=False):
        batches.append(len(blocks))
        return real(self, blocks, hidden)

    monkeypatch.setattr(RaggedBatch, "forward", watch)
    decoder = build(get_decoder(method), runner, tmp_path)
    requests = [make_request(p, 20) for p in BATCH_PROMPTS]
    results = decoder.generate_batch(requests)
    assert results[1].token_ids == [eos] and results[1].finish_reason == "eos"
    assert [results[0].token_ids, results[2].token_ids] == others
    assert batches and max(batches) == 2  # row 1 never joined a verify forward


def test_a_method_that_does_not_batch_refuses(tiny_runner, tmp_path):
    decoder = build(get_decoder("eagle2"), tiny_runner, tmp_path)
    with pytest.raises(ConfigError, match="method 'eagle2' runs at batch 1 only"):
        decoder.generate_batch([make_request([3, 4, 5], 4)])


@pytest.mark.parametrize("method", ["pld", "recycling", "lookahead"])
def test_batch_under_an_allow_list_equals_single(method, tmp_path):
    """Each row advances its own constraint state: constrained rows equal constrained batch 1."""
    from decbench.constraints.trie import AllowList
    from tests.test_constraints import EOS, _prompt, _request, random_allow_list

    runner = ModelRunner(tiny_llama())
    cls = get_decoder(method)
    requests = []
    for seed in range(3):
        sequences = random_allow_list(seed, n=20)
        constraint = AllowList(sequences, runner.vocab_size, [EOS], "test")
        requests.append(_request(_prompt(sequences)[: 10 + 5 * seed], constraint))
    batched = build(cls, runner, tmp_path / "b").generate_batch(requests)
    for request, got in zip(requests, batched, strict=True):
        alone = build(cls, runner, tmp_path / "s").generate(request)
        assert got.token_ids == alone.token_ids and got.constraint["satisfied"]


def test_compiled_static_runner_batches():
    """The compiled static runner runs a shrinking ragged batch (per-row masks as graph inputs,
    one graph set per batch width) with the tokens of eager batch-1 greedy."""
    from tests.conformance import BATCH_PROMPTS, greedy_ids

    model = tiny_llama()
    runner = StaticRunner(model, compile=True)
    decoder = build(get_decoder("pld"), runner, None, k=3)
    requests = [make_request(p, n) for p, n in zip(BATCH_PROMPTS[:2], (6, 3), strict=True)]
    results = decoder.generate_batch(requests)
    eager = ModelRunner(model)
    assert [r.token_ids for r in results] == [
        greedy_ids(eager, p, n) for p, n in ((BATCH_PROMPTS[0], 6), (BATCH_PROMPTS[1], 3))
    ]
    assert runner.compiled and runner.compile_error is None
