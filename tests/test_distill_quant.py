"""decbench quantize and distill on tiny random models: quantized folders load and serve as
lossless drafts, distillation runs end to end, resumes from its checkpoint, and the student it
writes is a lossless draft."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from decbench.backends.loader import load_runner
from decbench.decoders.base import DecoderContext, NoOptions
from decbench.decoders.greedy import Greedy
from decbench.decoders.speculative.draft_model import DraftModelOptions, SpeculativeDecoding
from decbench.errors import ConfigError
from decbench.quant.load import load_quantized, save_quantized
from decbench.quant.schemes import get_scheme, quantize_in_memory
from decbench.settings import BackendSettings, ModelSettings
from decbench.train.data import Sequence
from decbench.train.losses import make_batch
from decbench.train.trainer import DistillConfig, run_distill
from tests.conftest import TINY_VOCAB, make_request, repetitive_prompts, tiny_llama

WORDS = [f"w{i}" for i in range(TINY_VOCAB - 3)]


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(WORDS)}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.fixture
def tiny_folder(tmp_path):
    folder = tmp_path / "tiny"
    model = tiny_llama(layers=4)
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    prompts = tmp_path / "prompts.txt"
    rows = repetitive_prompts(12, seed=3)
    prompts.write_text("".join(" ".join(WORDS[t - 3] for t in r if t >= 3) + "\n" for r in rows))
    return folder, prompts


def load(name) -> object:
    return load_runner(ModelSettings(name=str(name)), BackendSettings(threads=1))


def ctx_loading() -> DecoderContext:
    return DecoderContext(load_model=load)


def assert_identical_to_greedy(target, draft: str, k: int) -> None:
    options = DraftModelOptions(draft=draft, k=k)
    speculative = SpeculativeDecoding(target, options, ctx_loading())
    greedy = Greedy(target, NoOptions(), ctx_loading())
    for prompt in repetitive_prompts(3, seed=5):
        expected = greedy.generate(make_request(prompt, 20)).token_ids
        got = speculative.generate(make_request(prompt, 20))
        assert got.token_ids == expected


@pytest.mark.parametrize("scheme", ["int8-dynamic", "int8-weight", "int4-weight"])
def test_quantized_folder_loads_with_the_same_logits(tiny_folder, tmp_path, scheme):
    pytest.importorskip("optimum.quanto")
    folder, _ = tiny_folder
    base = load(folder)
    model = quantize_in_memory(base.model, get_scheme(scheme))
    out = save_quantized(model, base.tokenizer, get_scheme(scheme), tmp_path / scheme, str(folder))
    reloaded = load(out)  # through the loader's marker dispatch
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    with torch.inference_mode():
        assert torch.allclose(model(ids).logits, reloaded.model(ids).logits, atol=1e-5)
    assert load_quantized(out) is not None


@pytest.mark.parametrize("draft", ["self:int8", "self:int4"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_quantized_self_draft_is_token_identical(tiny_folder, draft, k):
    pytest.importorskip("optimum.quanto")
    assert_identical_to_greedy(load(tiny_folder[0]), draft, k)


def distill_config(folder, prompts, out, **kw) -> DistillConfig:
    settings = dict(
        target=str(folder),
        kind="student",
        out=out,
        layers=2,
        steps=4,
        batch=2,
        seq_len=24,
        prompts=str(prompts),
        n_prompts=12,
        heldout=3,
        max_new_tokens=8,
        checkpoint_every=2,
        threads=1,
    )
    return DistillConfig(**(settings | kw))


@pytest.mark.parametrize("vocab_subset", [0, 16])
def test_distilled_student_is_a_lossless_draft(tiny_folder, tmp_path, vocab_subset):
    folder, prompts = tiny_folder
    out = tmp_path / "student"
    report = run_distill(distill_config(folder, prompts, out, vocab_subset=vocab_subset), ["x"])
    assert report.heldout.mat >= 1.0 and (out / "distill.json").is_file()
    assert not (out / "checkpoint.pt").exists()
    draft = load(out)
    assert draft.vocab_size == TINY_VOCAB
    if vocab_subset:  # tokens outside the subset get no probability at all
        logits = draft.forward(torch.tensor([[3, 4]])).logits[0, -1]
        assert (logits.softmax(-1) > 0).sum().item() <= vocab_subset
    for k in (1, 4):
        assert_identical_to_greedy(load(folder), str(out), k)


def test_medusa_heads_train_and_save(tiny_folder, tmp_path):
    from decbench.drafts.medusa import load_heads

    folder, prompts = tiny_folder
    out = tmp_path / "medusa"
    report = run_distill(distill_config(folder, prompts, out, kind="medusa", heads=2), ["x"])
    heads, record = load_heads(out)
    assert len(heads.blocks) == 2 and record["target"] == str(folder)
    assert report.heldout.mat >= 1.0


def test_medusa_heads_with_a_vocabulary_subset_drive_a_lossless_medusa(tiny_folder, tmp_path):
    from decbench.decoders.speculative.medusa import Medusa, MedusaOptions
    from decbench.drafts.medusa import load_heads

    folder, prompts = tiny_folder
    out = tmp_path / "medusa"
    config = distill_config(folder, prompts, out, kind="medusa", heads=3, vocab_subset=16)
    run_distill(config, ["x"])
    heads, record = load_heads(out)
    assert len(heads.subset) == 16 and record["vocab_subset"] == 16
    target = load(folder)
    medusa = Medusa(target, MedusaOptions(heads=str(out), top_k=3, nodes=8), DecoderContext(load))
    greedy = Greedy(target, NoOptions(), DecoderContext(load))
    for prompt in repetitive_prompts(4):
        expected = greedy.generate(make_request(prompt, 20)).token_ids
        result = medusa.generate(make_request(prompt, 20))
        assert result.token_ids == expected
        drafted = {t for step in result.steps for t in step.drafted}
        assert drafted <= set(heads.subset.tolist())  # heads only propose subset tokens


def test_eagle_draft_drives_a_lossless_eagle(tiny_folder, tmp_path):
    from decbench.decoders.speculative.eagle import Eagle, EagleOptions
    from decbench.drafts.eagle import load_eagle

    folder, prompts = tiny_folder
    out = tmp_path / "eagle"
    config = distill_config(folder, prompts, out, kind="eagle", vocab_subset=16, k=3, unroll=2)
    report = run_distill(config, ["x"])
    assert report.heldout.mat >= 1.0 and report.heldout.sequences == 3
    draft, record = load_eagle(out)
    assert len(draft.subset) == 16 and record["config"]["k"] == 3
    target = load(folder)
    eagle = Eagle(target, EagleOptions(draft=str(out)), DecoderContext(load))
    greedy = Greedy(target, NoOptions(), DecoderContext(load))
    for prompt in repetitive_prompts(4):
        expected = greedy.generate(make_request(prompt, 20)).token_ids
        result = eagle.generate(make_request(prompt, 20))
        assert result.token_ids == expected
        drafted = {t for step in result.steps for t in step.drafted}
        assert drafted <= set(draft.subset.tolist())  # the draft only proposes subset tokens


def test_a_batch_keeps_each_rows_last_seq_len_tokens():
    """The shared batcher (eagle, student) keeps a long row's tail, where the continuation is,
    and says where each window starts."""
    rows = [Sequence(3, [1, 2, 3, 4, 5, 6]), Sequence(2, [7, 8, 9]), Sequence(6, [*range(10, 18)])]
    ids, mask, starts = make_batch(rows, seq_len=4, pad=0)
    assert ids.tolist() == [[3, 4, 5, 6], [7, 8, 9, 0], [14, 15, 16, 17]]
    assert mask.sum(1).tolist() == [4, 3, 4] and not mask[1, 3]
    assert starts == [2, 0, 4]


def test_eagle_trains_on_the_continuation_of_prompts_longer_than_seq_len(
    tiny_folder, tmp_path, monkeypatch
):
    """A sequence longer than seq_len keeps its last seq_len tokens, with their own cached
    features, and its continuation's rows are the scored ones (cutting the end instead would
    leave a long prompt nothing to train on)."""
    from safetensors.torch import load_file

    from decbench.train import eagle as eagle_kind
    from decbench.train.data import load_data

    monkeypatch.setenv("DECBENCH_CACHE", str(tmp_path / "cache"))
    real_loss, seen = eagle_kind.eagle_loss, []

    def recording(draft, embed, rows, ids, features, mask, generator, scored, unroll):
        seen.append((ids, features, scored))
        return real_loss(draft, embed, rows, ids, features, mask, generator, scored, unroll)

    monkeypatch.setattr(eagle_kind, "eagle_loss", recording)
    folder, prompts = tiny_folder
    seq_len, new = 8, 4
    config = distill_config(
        folder, prompts, tmp_path / "e", kind="eagle", seq_len=seq_len, max_new_tokens=new
    )
    run_distill(config, ["x"])
    (data,) = (tmp_path / "cache" / "distill-data").glob("*.jsonl")
    states = load_file(str(data.with_suffix(".hidden.safetensors")))
    bounds = states["offsets"].tolist()
    tails: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
    for n, s in enumerate(load_data(data)):
        assert s.prompt_len > seq_len - new  # every row is cut, inside its prompt
        rows = states["hidden"][bounds[n] : bounds[n + 1]][-seq_len:].float()
        tails.setdefault(tuple(s.ids[-seq_len:]), []).append((len(s.ids) - s.prompt_len, rows))
    assert seen
    for ids, features, scored in seen:
        assert ids.shape[1] == seq_len
        for row, rows, flags in zip(ids.tolist(), features, scored.tolist(), strict=True):
            assert any(
                torch.equal(rows, want) and flags == [False] * (seq_len - 1 - c) + [True] * c
                for c, want in tails[tuple(row)]
            )


def test_eagle_init_starts_from_a_trained_draft(tiny_folder, tmp_path):
    from safetensors.torch import load_file

    folder, prompts = tiny_folder
    first = tmp_path / "first"
    run_distill(distill_config(folder, prompts, first, kind="eagle", vocab_subset=12), ["x"])
    again = tmp_path / "again"
    config = distill_config(folder, prompts, again, kind="eagle", init=str(first), lr=0.0)
    run_distill(config, ["x"])  # no subset asked for: the draft keeps its own
    a, b = load_file(str(first / "eagle.safetensors")), load_file(str(again / "eagle.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    record = json.loads((again / "distill.json").read_text())
    assert record["init"]["command"] == ["x"] and record["config"]["init"] == str(first)
    with pytest.raises(ConfigError, match="--init"):
        run_distill(distill_config(folder, prompts, tmp_path / "s", init=str(first)), ["x"])
    from decbench.drafts.eagle import EagleDraft, EagleShape, save_eagle

    other = tmp_path / "other"  # made for a hidden size of 16: the target has 32
    other.mkdir()
    save_eagle(EagleDraft(EagleShape(16, 2, 2, 8, 32)), other, {"target": "elsewhere"})
    with pytest.raises(ConfigError, match="hidden size of 16"):
        run_distill(
            distill_config(folder, prompts, tmp_path / "o", kind="eagle", init=str(other)), ["x"]
        )


@pytest.mark.parametrize(
    ("kind", "schedule", "weights"),
    [
        ("student", "constant", "student.safetensors"),
        ("medusa", "cosine", "medusa.safetensors"),
        ("eagle", "cosine", "eagle.safetensors"),
    ],
)
def test_resume_continues_from_the_checkpoint(tiny_folder, tmp_path, kind, schedule, weights):
    folder, prompts = tiny_folder
    settings = {"kind": kind, "lr_schedule": schedule}
    whole = run_distill(distill_config(folder, prompts, tmp_path / "a", **settings), ["x"])

    def interrupt(stats):
        if stats.step == 3:
            raise KeyboardInterrupt

    out = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        run_distill(distill_config(folder, prompts, out, **settings), ["x"], on_step=interrupt)
    assert (out / "checkpoint.pt").is_file()
    resumed = run_distill(distill_config(folder, prompts, out, **settings), ["x"], resume=True)
    assert resumed.resumed_from == 2
    assert resumed.final_loss == pytest.approx(whole.final_loss, rel=1e-5)
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "a" / weights)), load_file(str(out / weights))
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from decbench.train.trainer import learning_rate

    config = DistillConfig(target="t", kind="medusa", out="o", steps=1000, lr=1e-3)
    assert {learning_rate(config, s) for s in (0, 500, 999)} == {1e-3}
    config.lr_schedule = "cosine"
    rates = [learning_rate(config, s) for s in range(1000)]
    assert rates[0] == pytest.approx(1e-5) and rates[99] == pytest.approx(1e-3)  # 100 warm-up
    assert all(a >= b for a, b in itertools.pairwise(rates[99:]))
    assert rates[549] == pytest.approx(5e-4, rel=0.01) and rates[-1] < 1e-8


def test_cli_help_of_quantize_and_distill():
    from typer.testing import CliRunner

    from decbench.cli.app import app

    for command in ("quantize", "distill"):
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Examples" in result.output


def test_training_prompts_are_disjoint_from_the_suites_and_keep_their_first_300():
    import hashlib
    import json

    from decbench.suites import list_suites
    from decbench.train.prompts import training_prompts

    prompts = training_prompts()
    assert len(prompts) == len(set(prompts)) > 1000
    turns = {t.strip() for s in list_suites() for x in s.samples for t in x.turns}
    assert not turns & set(prompts)
    # the shipped student was distilled on the first 300 (its distill.json records the data)
    first = hashlib.sha256(json.dumps(prompts[:300]).encode()).hexdigest()[:12]
    assert first == "073e6ac23b6f"


def test_medusa_reads_the_targets_last_hidden_states_from_a_cache(
    tiny_folder, tmp_path, monkeypatch
):
    """The cached states are the target's last hidden states, after the final norm (so its
    logits are hidden @ lm_head.T, which the heads' soft labels rely on); batches pad rows of
    different lengths without changing them; a second call reads the file; a changed data file
    is computed again."""
    from decbench.train.data import last_hidden_states, make_data, read_prompts

    monkeypatch.setenv("DECBENCH_CACHE", str(tmp_path / "cache"))
    folder, prompts = tiny_folder
    target = load(folder)
    _, texts = read_prompts(str(prompts), 6)
    path, sequences = make_data(target, str(folder), texts, 8)
    model, calls = target.model, []

    def counting(**kw):
        calls.append(kw["input_ids"].shape[0])
        return model(**kw)

    target.model = counting
    states = last_hidden_states(target, path, sequences, batch=4)
    assert sorted({len(s.ids) for s in sequences}) != [len(sequences[0].ids)]  # padding happens
    weight = model.get_output_embeddings().weight
    for seq, state in zip(sequences, states, strict=True):
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([seq.ids]), output_hidden_states=True)
            last = out.hidden_states[-1][0]  # [n, hidden]
            assert torch.allclose(last @ weight.T, out.logits[0], atol=1e-5)
        assert state.dtype == torch.float16 and state.shape == last.shape
        assert torch.allclose(state.float(), last, atol=2e-3)
    assert calls == [4, 2]
    again = last_hidden_states(target, path, sequences, batch=4)
    assert calls == [4, 2] and all(torch.equal(a, b) for a, b in zip(states, again, strict=True))
    path.write_text(path.read_text() + "\n")  # same sequences, another checksum
    last_hidden_states(target, path, sequences, batch=4)
    assert calls == [4, 2, 4, 2]


def test_more_prompts_reuse_the_whole_batches_of_a_cached_prefix(
    tiny_folder, tmp_path, monkeypatch
):
    from decbench.train import data

    folder, prompts = tiny_folder
    target = load(folder)
    _, texts = data.read_prompts(str(prompts), 12)
    monkeypatch.setenv("DECBENCH_CACHE", str(tmp_path / "fresh"))
    _, fresh = data.make_data(target, str(folder), texts, 8, batch=4)
    monkeypatch.setenv("DECBENCH_CACHE", str(tmp_path / "grown"))
    data.make_data(target, str(folder), texts[:6], 8, batch=4)  # batches [0:4] and [4:6]
    generate, batches = data.continue_greedy, []

    def counting(runner, chunk, n):
        batches.append(len(chunk))
        return generate(runner, chunk, n)

    monkeypatch.setattr(data, "continue_greedy", counting)
    _, grown = data.make_data(target, str(folder), texts, 8, batch=4)
    assert batches == [4, 4]  # [4:8] and [8:12]: the short batch [4:6] is made again, in full
    assert grown == fresh


def test_an_interrupted_generation_continues_from_its_partial_file(
    tiny_folder, tmp_path, monkeypatch
):
    """Each finished batch is on disk at once: a run stopped in its third batch keeps the first
    two, and the rerun generates only the rest, ending with the same file as a fresh run."""
    from decbench.train import data

    folder, prompts = tiny_folder
    target = load(folder)
    _, texts = data.read_prompts(str(prompts), 12)
    monkeypatch.setenv("DECBENCH_CACHE", str(tmp_path / "fresh"))
    fresh_path, fresh = data.make_data(target, str(folder), texts, 8, batch=4)
    monkeypatch.setenv("DECBENCH_CACHE", str(tmp_path / "stopped"))
    generate, batches = data.continue_greedy, []

    def stopping(runner, chunk, n):
        batches.append(len(chunk))
        if len(batches) == 3:
            raise KeyboardInterrupt
        return generate(runner, chunk, n)

    monkeypatch.setattr(data, "continue_greedy", stopping)
    with pytest.raises(KeyboardInterrupt):
        data.make_data(target, str(folder), texts, 8, batch=4)
    batches.clear()
    monkeypatch.setattr(
        data, "continue_greedy", lambda r, c, n: batches.append(0) or generate(r, c, n)
    )
    path, resumed = data.make_data(target, str(folder), texts, 8, batch=4)
    assert batches == [0]  # only [8:12] was generated again
    assert resumed == fresh and path.read_text() == fresh_path.read_text()
    assert not list(path.parent.glob("*.partial"))


def test_varied_prompts_hold_no_suite_text_and_mix_their_kinds():
    """`--prompts varied` builds on real stdlib text; none of a suite's passages or code (any
    paragraph of 60+ characters) may appear in it, and any stretch of the list mixes kinds."""
    from decbench.suites import list_suites
    from decbench.train.data import read_prompts
    from decbench.train.varied_prompts import counts

    source, prompts = read_prompts("varied", 10_000)
    assert source == "decbench.train.varied_prompts"
    assert len(prompts) == len(set(prompts)) == counts()["varied"] > 800
    text = "\n".join(prompts)
    paragraphs = {
        p.strip()
        for s in list_suites()
        for x in s.samples
        for t in x.turns
        for p in t.split("\n\n")
        if len(p.strip()) >= 60
    }
    assert paragraphs and not [p for p in paragraphs if p in text]
    first = prompts[:40]
    assert any(p.startswith("Translate into") for p in first)
    assert any("```python" in p for p in first)
    assert any("Document 1:" in p for p in first)
