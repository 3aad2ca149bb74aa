"""The llama.cpp backend: the runner against llama.cpp's own greedy, rollback and tree
verification against sequential decoding, every lossless method against the backend's greedy,
the reference rows, capabilities refused at plan time, and the tokenizer against llama.cpp's.

llama.cpp's logits depend on how many tokens a decode carries (its kernels accumulate in other
orders; on the embedded Q4_1 model the largest change over the vocabulary is about 1 logit). A
verify forward over k tokens can therefore flip a near-tie that greedy's one-token steps
decided the other way. The lossless tests accept a divergence only where greedy's own top-2
logit margin at that position is below NEAR_TIE, and fail otherwise.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from decbench.backends.capabilities import check_supported
from decbench.backends.llamacpp import MAX_SEQUENCES
from decbench.decoders.speculative import tree
from decbench.decoders.speculative.proposer import Draft
from decbench.errors import ConfigError, RunError
from decbench.profiles import method_profile
from decbench.run import open_session
from decbench.settings import BackendSettings, ModelSettings

NEAR_TIE = 0.5  # logits: greedy's top-2 margin under which a batch-size flip is accepted
BATCH_NOISE = 2.0  # logits: the largest change over the vocabulary between batch sizes (~1.2)
MAX_NEW = 24
PROMPTS = [
    "Repeat exactly: the red fox and the blue fox met the green fox by the river.",
    "Summarize in one sentence: The library opens at nine. The library closes at five. "
    "On Sundays the library is closed.",
]
BACKEND = [("backend", "name", "llama.cpp"), ("backend", "threads", 1), ("backend", "n_ctx", 1024)]
GEN = ("generation", "max_new_tokens", MAX_NEW)


# -- sequence ids for tree masks (no model needed) ---------------------------------------------
def visible(seqs: list[tuple[int, ...]], positions: np.ndarray) -> np.ndarray:
    """llama.cpp's rule: token i sees token j when j carries i's first sequence id and sits at a
    position no later than i's."""
    n = len(seqs)
    return np.array(
        [
            [seqs[i][0] in seqs[j] and positions[j] <= positions[i] for j in range(n)]
            for i in range(n)
        ]
    )


def random_tree(rng: np.random.Generator, n: int) -> list[int]:
    return [int(rng.integers(-1, i)) for i in range(n)]


def test_tree_sequences_reproduce_every_tree_mask():
    from decbench.backends.llamacpp import tree_sequences

    rng = np.random.default_rng(0)
    for n in range(1, 40):
        draft = Draft(list(range(n)), None, random_tree(rng, n))
        block = tree.flatten(draft, pending=7, past=5)
        mask, positions = block.mask[0].numpy(), block.positions[0].numpy()
        seqs, count = tree_sequences(mask, positions)
        assert (visible(seqs, positions) == mask).all()
        leaves = sum(1 for kids in tree.children(draft.parents)[1:] if not kids) or 1
        assert count == leaves  # one sequence per root-to-leaf path


def test_tree_sequences_reproduce_the_lookahead_window():
    """A Jacobi window (each token sees the pending token, level 0 up to its column and its own
    column below it) next to a tree: one sequence per column plus one per leaf."""
    from decbench.backends.llamacpp import tree_sequences
    from decbench.decoders.speculative.lookahead import JacobiWindow

    window = JacobiWindow([10, 11, 12, 13], depth=3)
    for level in range(2):
        window.advance(torch.zeros(4, 32).index_fill_(1, torch.tensor([20 + level]), 1.0))
    side = window.side_branch()
    assert len(side.tokens) == 12
    draft = Draft([3, 4, 5], None, [-1, 0, -1], None, side)
    block = tree.flatten(draft, pending=7, past=5)
    mask, positions = block.mask[0].numpy(), block.positions[0].numpy()
    seqs, _ = tree_sequences(mask, positions)
    assert (visible(seqs, positions) == mask).all()


def test_tree_sequences_refuse_a_row_with_a_gap():
    from decbench.backends.llamacpp import tree_sequences

    mask = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 1]], dtype=bool)  # token 2 skips position 1
    with pytest.raises(RunError, match="non-contiguous"):
        tree_sequences(mask, np.array([5, 6, 7]))


def test_methods_needing_torch_internals_are_refused_at_plan_time():
    for method in ("medusa", "eagle", "contrastive", "beam", "hf-greedy", "dllm-confidence"):
        with pytest.raises(
            ConfigError, match=rf"'{method}' needs .*backend.name = \"transformers\""
        ):
            check_supported(method, _requires(method), "llama.cpp")
    with pytest.raises(ConfigError, match=r'needs a llama.cpp context.*"llama.cpp"'):
        check_supported("llamacpp-greedy", _requires("llamacpp-greedy"), "transformers")
    with pytest.raises(ConfigError, match=r"backend.name: 'vllm' is not one of"):
        check_supported("greedy", frozenset(), "vllm")


def test_open_session_refuses_before_loading_a_model():
    profile = method_profile("medusa", [("backend", "name", "llama.cpp"), ("model", "name", "x")])
    with pytest.raises(ConfigError, match="method 'medusa' needs"):
        open_session(profile)


def _requires(method: str) -> frozenset[str]:
    from decbench.decoders.registry import get_decoder

    return get_decoder(method).spec.requires


# -- on the embedded GGUF ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def runner():
    pytest.importorskip("llama_cpp")
    from decbench.backends.loader import load_runner

    settings = BackendSettings(name="llama.cpp", threads=1, n_ctx=1024)
    return load_runner(ModelSettings(), settings)


@pytest.fixture(scope="module")
def greedy(runner):
    return open_session(method_profile("greedy", [*BACKEND, GEN]), target=runner)


def encode(runner, prompt: str) -> list[int]:
    ids = runner.tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
    )
    return list(ids if isinstance(ids, list) else ids["input_ids"])


def step_greedy(runner, ids: list[int], n: int) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy by hand: prefill, then one token per forward. Returns tokens and their logits."""
    logits = runner.prefill(torch.tensor([ids])).logits[0, -1]
    tokens, rows = [], []
    for _ in range(n):
        rows.append(logits)
        tokens.append(int(logits.argmax()))
        logits = runner.forward(torch.tensor([[tokens[-1]]]), all_logits=False).logits[0, -1]
    return tokens, rows


@pytest.mark.model
def test_runner_greedy_equals_llama_cpp_generate(runner):
    from decbench.decoders.llamacpp_common import open_llama

    llama = open_llama(runner)
    for prompt in PROMPTS:
        ids = encode(runner, prompt)
        ours, rows = step_greedy(runner, ids, MAX_NEW)
        assert rows[0].dtype == torch.float32 and rows[0].shape == (runner.vocab_size,)
        llama.reset()
        theirs = []
        for token in llama.generate(ids, temp=0.0, repeat_penalty=1.0):
            theirs.append(int(token))
            if len(theirs) == MAX_NEW:
                break
        assert ours == theirs


@pytest.mark.model
def test_tokenizer_agrees_with_llama_cpp(runner):
    from decbench.decoders.llamacpp_common import open_llama

    llama = open_llama(runner)
    texts = [*PROMPTS, "def f(x):\n    return x ** 2  # ünïcode", "  spaces\tand\nnewlines  "]
    chat = runner.tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPTS[0]}], add_generation_prompt=True, tokenize=False
    )
    for text in [*texts, chat]:
        ours = runner.tokenizer(text, add_special_tokens=False)["input_ids"]
        theirs = llama.tokenize(text.encode(), add_bos=False, special=True)
        assert ours == theirs, text
    assert runner.eos_token_ids and runner.tokenizer.eos_token_id in runner.eos_token_ids


@pytest.mark.model
def test_crop_then_decode_equals_a_fresh_decode(runner):
    ids = encode(runner, PROMPTS[0])
    tokens, _ = step_greedy(runner, ids, 8)
    runner.prefill(torch.tensor([ids]))
    runner.forward(torch.tensor([[tokens[0], 11, 12, 13, 14]]))  # a rejected draft
    runner.crop(len(ids) + 1)
    assert runner.cache_len == len(ids) + 1
    after_crop = runner.forward(torch.tensor([tokens[1:4]])).logits[0]
    runner.prefill(torch.tensor([ids + tokens[:1]]))
    fresh = runner.forward(torch.tensor([tokens[1:4]])).logits[0]
    assert torch.equal(after_crop, fresh)


@pytest.mark.model
def test_tree_verification_accepts_what_sequential_verification_accepts(runner):
    """A tree with the true greedy path and decoy branches, verified in one decode: every node's
    logits are those of its own path run as a chain (up to llama.cpp's batch-size noise, far
    below what a wrong context makes), the accepted path is the one sequential verification
    accepts (or they part at a near-tie), and compaction leaves exactly the path in the cache."""
    ids = encode(runner, PROMPTS[0])
    truth, _ = step_greedy(runner, ids, 6)
    branches = [truth[1:5], [truth[1], truth[2], 999], [777, 778, 779], [truth[1], 555]]
    builder = tree.TreeBuilder()
    for branch in branches:
        builder.add_path(branch, "branch")
    draft = builder.draft()
    runner.prefill(torch.tensor([ids]))
    block = tree.flatten(draft, truth[0], runner.cache_len)
    logits = runner.forward(block.ids, block.positions, block.mask).logits[0]
    verdict = tree.accept_greedy(draft, logits[: 1 + len(draft.tokens)].argmax(-1).tolist())
    accepted = [draft.tokens[node] for node in verdict.path]

    best: list[int] = []  # sequential verification: each branch as a chain, the longest wins
    chain_rows = {}
    for branch in branches:
        runner.prefill(torch.tensor([ids]))
        rows = runner.forward(torch.tensor([[truth[0], *branch]])).logits[0]
        node = tree.ROOT
        for depth, token in enumerate([None, *branch]):
            if token is not None:
                node = builder.child(node, token, "branch")
            chain_rows[node] = rows[depth]
        argmax = rows.argmax(-1).tolist()
        n = 0
        while n < len(branch) and branch[n] == argmax[n]:
            n += 1
        best = max(best, branch[:n], key=len)
    for node, row in chain_rows.items():
        assert (logits[node + 1] - row).abs().max() < BATCH_NOISE, node
    if accepted != best:
        at = next(
            i for i, (a, b) in enumerate(zip([*accepted, -1], [*best, -1], strict=False)) if a != b
        )
        top = chain_rows[tree.ROOT if at == 0 else verdict.path[at - 1]].topk(2).values
        assert float(top[0] - top[1]) < NEAR_TIE

    runner.prefill(torch.tensor([ids]))
    runner.forward(block.ids, block.positions, block.mask)
    runner.compact(len(ids), tree.compact_keep(verdict.path))
    end = len(ids) + 1 + len(verdict.path)
    assert runner.cache_len == end
    memory, lib = runner._memory, runner.lib
    assert lib.llama_memory_seq_pos_max(memory, 0) == end - 1
    for s in range(1, MAX_SEQUENCES):  # no other sequence keeps a cell of the tree
        assert lib.llama_memory_seq_pos_max(memory, s) in (-1, len(ids) - 1, end - 1)
    after_tree = runner.forward(torch.tensor([[verdict.bonus]])).logits[0, -1]
    runner.prefill(torch.tensor([ids]))
    runner.forward(torch.tensor([[truth[0], *accepted]]))
    chain = runner.forward(torch.tensor([[verdict.bonus]])).logits[0, -1]
    assert (after_tree - chain).abs().max() < BATCH_NOISE


LOSSLESS = [
    ("pld", []),
    ("lookahead", []),
    ("recycling", []),
    ("aded", []),
    ("speculative", [("method", "draft", "smollm2-135m@q4_0")]),
    ("llamacpp-greedy", []),
    ("llamacpp-pld", []),
]


@pytest.fixture(scope="module")
def greedy_outputs(greedy):
    """prompt -> (prompt ids, greedy's result), computed once for all methods."""
    out = {}
    for prompt in PROMPTS:
        ids = greedy.encode(prompt)
        out[prompt] = ids, greedy.generate(prompt, prompt_ids=ids)
    return out


@pytest.mark.model
@pytest.mark.parametrize("method,options", LOSSLESS, ids=[m for m, _ in LOSSLESS])
def test_lossless_methods_equal_the_backends_greedy(runner, greedy_outputs, method, options):
    session = open_session(method_profile(method, [*BACKEND, GEN, *options]), target=runner)
    accepted = 0
    for prompt, (ids, expected) in greedy_outputs.items():
        got = session.generate(prompt, prompt_ids=ids)
        assert got.finish_reason in ("eos", "length")
        assert sum(step.emitted for step in got.steps) == len(got.token_ids)
        accepted += sum(step.accepted for step in got.steps)
        check_exact_or_near_tie(runner, ids, expected.token_ids, got.token_ids, method)
    assert accepted > 0 or not session.decoder.spec.drafts  # drafts were verified and kept


def check_exact_or_near_tie(runner, ids, expected: list[int], got: list[int], method: str) -> None:
    """Pass when identical; when not, fail unless greedy's own top-2 margin at the first
    divergence is under NEAR_TIE (then warn with the margin)."""
    at = next((i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b), None)
    if at is None:
        assert len(got) == len(expected), f"{method}: same prefix, different length"
        return
    _, rows = step_greedy(runner, ids, at + 1)
    top = rows[at].topk(2).values
    margin = float(top[0] - top[1])
    assert margin < NEAR_TIE, (
        f"{method} diverges from greedy at token {at} where greedy's top-2 margin is "
        f"{margin:.3f} logits, not a near-tie"
    )
    warnings.warn(
        f"{method}: diverges at token {at}, a near-tie (margin {margin:.3f})", stacklevel=2
    )


@pytest.mark.model
def test_a_quantized_self_draft_is_cached_and_self_drafts_are_refused(runner):
    from decbench.backends.llamacpp import resolve_gguf

    path = resolve_gguf("smollm2-135m@q4_0")
    assert path.is_file() and path.stat().st_size < runner.gguf.stat().st_size
    with pytest.raises(ConfigError, match=r"unknown llama.cpp quantization 'q3'"):
        resolve_gguf("smollm2-135m@q3")
    with pytest.raises(ConfigError, match="made from the target's torch model"):
        open_session(
            method_profile("speculative", [*BACKEND, ("method", "draft", "self:int8")]),
            target=runner,
        )


@pytest.mark.model
def test_compare_on_llama_cpp_reports_against_llama_cpp_greedy(monkeypatch, capsys):
    pytest.importorskip("llama_cpp")
    from tests.test_compare import run_cli

    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "compare",
        "llamacpp-greedy",
        "llamacpp-pld",
        "-m",
        "pld",
        "--set",
        "backend.name=llama.cpp",
        "--set",
        "backend.threads=1",
        "--suite",
        "input-grounded",
        "--limit",
        "1",
        "-n",
        "12",
        "--json",
    )
    assert code == 0, err
    import json

    summary = json.loads(out)
    results = summary["results"]
    assert set(results) == {"llamacpp-greedy", "llamacpp-pld", "pld"}
    for label in ("llamacpp-pld", "pld"):
        category = next(iter(results[label]["categories"].values()))
        assert category["speedup"]["median"] > 0
        assert "rate" in category["exact_match"]
