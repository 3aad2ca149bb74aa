"""`compare --batch-size` (compare/batching.py): per method and batch size, throughput, latency,
speedup against the baseline at the same size, exactness against batch 1 with the first
divergence and its margin, the crossover, the curve plot and the CLI's errors and JSON."""

from __future__ import annotations

import json

import pytest

from decbench.compare import batching as batching_mod
from decbench.compare import make_plan
from decbench.compare.batching import SCHEMA_BATCH, parse_batch_sizes, run_batch_compare
from decbench.compare.harness import Contender
from decbench.decoders.registry import get_decoder
from decbench.errors import ConfigError
from decbench.run import Session
from tests.conftest import no_models_ctx
from tests.test_compare import run_cli
from tests.tiny_sessions import contender, tiny_suite, tiny_target


@pytest.fixture
def tiny_contenders():
    target = tiny_target()
    return [
        contender("greedy", "greedy", target),
        contender("pld", "pld", target, k=4),
        contender("recycling", "recycling", target),
    ]


def plan_of(contenders, warmup=0):
    return make_plan([c.profile for c in contenders], tiny_suite(), warmup=warmup)


def test_parse_batch_sizes():
    assert parse_batch_sizes("4,1, 2,4") == [1, 2, 4]
    for bad in ("0", "2,x", "", "1,,2", "-1", "1.5"):
        with pytest.raises(ConfigError, match="--batch-size"):
            parse_batch_sizes(bad)


def test_batch_compare_reports_every_method_and_size(tiny_contenders):
    summary = run_batch_compare(plan_of(tiny_contenders, 1), [1, 2], contenders=tiny_contenders)
    assert summary.schema == SCHEMA_BATCH and summary.batch_sizes == [1, 2]
    json.dumps(summary.to_json())  # plain data
    for label in ("greedy", "pld", "recycling"):
        for size, groups in ((1, 3), (2, 2)):  # 3 prompts: groups of 2 are [a-1 a-2] [b-1]
            entry = summary.results[label][size]
            assert entry.groups == groups and entry.requests == 3
            assert entry.tokens_per_s > 0 and entry.latency_s.n == 3
            assert entry.identical_to_batch1 == 1.0 and entry.identical_to_baseline == 1.0
            assert entry.divergences == []
            assert (entry.speedup is None) == (label == "greedy")
    assert set(summary.crossover) == {"pld", "recycling"}
    batch2 = [r for r in summary.runs if r.batch_size == 2 and r.label == "pld"]
    assert [r.samples for r in batch2] == [[0, 1], [2]]


def test_a_divergence_from_batch_1_is_reported_with_its_margin(tiny_contenders, monkeypatch):
    """A batch that changes one token is caught: first index, tokens, margin, not a near-tie."""
    decoder = tiny_contenders[1].session.decoder
    real = type(decoder).generate_batch

    def wrong(self, requests):
        results = real(self, requests)
        results[0].token_ids[3] = (results[0].token_ids[3] + 1) % 40 + 2
        return results

    monkeypatch.setattr(type(decoder), "generate_batch", wrong)
    summary = run_batch_compare(plan_of(tiny_contenders), [2], contenders=tiny_contenders)
    entry = summary.results["pld"][2]
    assert entry.identical_to_batch1 == pytest.approx(2 / 3)
    (found,) = entry.divergences
    assert found.position == 3 and found.sample_id == "a-1"
    assert found.margin > 0 and not found.near_tie


def test_crossover():
    cross = crossover_of([(1, 1.5), (2, 1.2), (4, 0.8), (8, 0.6)])
    assert cross.pays_up_to == 2 and cross.below_1_at == 4
    assert 2 < cross.estimate < 4  # 1.2 -> 0.8 crosses halfway in log2: B = 2 ** 1.5
    assert cross.estimate == pytest.approx(2**1.5, abs=0.01)


def test_curve_plot(tiny_contenders, tmp_path):
    from decbench.compare.plot import plot_batch_curve

    summary = run_batch_compare(plan_of(tiny_contenders), [1, 2], contenders=tiny_contenders)
    path = plot_batch_curve(summary, tmp_path / "curve.png")
    assert path.stat().st_size > 1000


def fake_open(labels, profiles, progress):
    """open_contenders on the tiny target, with the plan's own profiles."""
    target = tiny_target()
    out = []
    for label, profile in zip(labels, profiles, strict=True):
        decoder = get_decoder(profile.method)(target, profile.options, no_models_ctx())
        session = Session(profile, target, decoder)
        out.append(Contender(label, profile, session, {"model_fingerprint": "test"}))
    return out


def test_cli_batch_size_json(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(batching_mod, "open_contenders", fake_open)
    args = ["compare", "greedy", "pld", "--batch-size", "1,2", "--suite", "multi-turn"]
    args += ["--limit", "3", "--max-new-tokens", "8", "--warmup", "0", "--json"]
    code, out, err = run_cli(monkeypatch, capsys, *args, "--plot", str(tmp_path / "c.png"))
    assert code == 0, err
    summary = json.loads(out)
    assert summary["schema"] == SCHEMA_BATCH
    assert summary["results"]["pld"]["2"]["identical_to_batch1"] == 1.0
    assert summary["results"]["pld"]["1"]["speedup"]["n"] == 3
    assert (tmp_path / "c.png").exists()


def test_cli_batch_size_table(monkeypatch, capsys):
    monkeypatch.setattr(batching_mod, "open_contenders", fake_open)
    args = ["compare", "greedy", "pld", "--batch-size", "2", "--suite", "multi-turn"]
    code, out, err = run_cli(monkeypatch, capsys, *args, "--limit", "2", "--max-new-tokens", "6")
    assert code == 0, err
    assert "speedup" in out and "= batch 1" in out
    assert "pld:" in err  # the crossover line


@pytest.mark.parametrize(
    "args,message",
    [
        (["--batch-size", "0"], "'0' is not a batch size"),
        (["--batch-size", "2,x"], "'x' is not a batch size"),
        (["-m", "eagle2", "--batch-size", "2"], "method 'eagle2' runs at batch 1 only"),
        (["--batch-size", "2", "--output", "/tmp/x"], "drop --output"),
        (
            ["-m", "pld", "--batch-size", "2", "--set", "backend.name=llama.cpp"],
            "backend 'llama.cpp' runs at batch 1 only",
        ),
    ],
)
def test_cli_batch_size_bad_input(monkeypatch, capsys, args, message):
    code, _out, err = run_cli(monkeypatch, capsys, "compare", "greedy", *args)
    assert code == 2, err
    assert message in err


def crossover_of(ratios):
    runs = []
    for size, ratio in ratios:
        for label, tps in (("greedy", 10.0), ("x", 10.0 * ratio)):
            runs.append(
                batching_mod.GroupRun(
                    label=label, batch_size=size, group=0, repeat=0, samples=[0], wall_s=1 / tps,
                    tokens=1, tokens_per_s=tps, latency_s=[1.0], token_ids=[[5]], steps=1,
                    mat=1.0, finish_reasons=["length"], identical_to_batch1=[True],
                    identical_to_baseline=[True],
                )
            )  # fmt: skip
    return batching_mod.crossover(runs, "x", "greedy", [s for s, _ in ratios])


def test_crossover_of_a_curve_that_is_not_monotonic():
    """Below 1.0 at B = 1, above at B = 2 (seen on a CPU): it pays at 2, crosses after it."""
    cross = crossover_of([(1, 0.9), (2, 1.2), (4, 0.8)])
    assert cross.pays_at == [2] and cross.pays_up_to == 2 and cross.below_1_at == 4
    assert crossover_of([(1, 0.9), (2, 0.8)]).pays_up_to is None
    assert crossover_of([(1, 1.1), (2, 1.3)]).below_1_at is None
