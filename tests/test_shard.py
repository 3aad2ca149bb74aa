"""compare spread over processes (compare/shard.py): ranks split the plan by prompt, rank 0
merges, --resume under the launcher re-runs only what is missing, and --merge combines folders.

The launcher tests start real `accelerate launch` runs of 2 CPU processes on a tiny random model
that uses the default model's tokenizer (so prompts encode as usual, in seconds)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from decbench.compare.shard import (
    Ranks,
    in_plan_order,
    merge_folders,
    parse_shard,
    plan_difference,
    unique,
)
from decbench.compare.store import SAMPLES_FILE, read_plan, read_records
from decbench.errors import ConfigError
from tests.records import sample_record
from tests.test_compare import run_cli

COMPARE = ["compare", "greedy", "pld", "--suite", "spec-bench-mini", "--limit", "1", "-n", "6"]


def test_share_is_a_stride_and_threads_split_the_cores():
    items = list(range(7))
    assert Ranks(0, 2).share(items) == [0, 2, 4, 6]
    assert Ranks(1, 2).share(items) == [1, 3, 5]
    assert (
        sorted(Ranks(0, 3).share(items) + Ranks(1, 3).share(items) + Ranks(2, 3).share(items))
        == items
    )
    assert Ranks(0, 2, 0, 2).cpu_threads(cores=2) == 1
    assert Ranks(0, 4, 0, 2).cpu_threads(cores=16) == 8  # 2 local ranks on this host
    assert Ranks(0, 3, 0, 3).cpu_threads(cores=2) == 1  # never 0
    assert not Ranks().sharded and Ranks().main


def test_detect_without_a_launcher_is_one_rank(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ranks = Ranks.detect()
    assert (ranks.rank, ranks.world) == (0, 1)


def test_plan_difference_names_the_key():
    plan = {"created": "x", "repeat": 1, "profiles": [{"label": "greedy", "profile": {"a": 1}}]}
    same = {**plan, "created": "y"}
    assert plan_difference(plan, same) is None
    other = {**plan, "profiles": [{"label": "greedy", "profile": {"a": 2}}]}
    assert plan_difference(plan, other) == "profiles[0].profile.a: 1 vs 2"
    assert "repeat" in plan_difference(plan, {**plan, "repeat": 3})


def test_unique_keeps_the_first_copy():
    a = sample_record("g", "s", 0, tokens_per_s=1.0)
    b = sample_record("g", "s", 0, tokens_per_s=2.0)
    c = sample_record("p", "s", 0, tokens_per_s=3.0)
    assert unique([a, b, c]) == [a, c]


# -- real launches ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama with the default model's tokenizer and vocabulary."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from decbench.models import DEFAULT_MODEL, resolve

    source = resolve(DEFAULT_MODEL)
    folder = tmp_path_factory.mktemp("tiny-smollm")
    tokenizer = AutoTokenizer.from_pretrained(source)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    shutil.copy(source / "generation_config.json", folder)
    return folder


def launch(args: list[str], processes: int = 2) -> subprocess.CompletedProcess:
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", str(processes)]
    port = str(29500 + os.getpid() % 1000)
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["--main_process_port", port]
    command += ["-m", "decbench", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def single(args: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "decbench", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def tokens(folder: Path) -> dict[tuple, list]:
    return {
        (r.profile, r.sample_id, r.repeat): r.token_ids for r in read_records(folder / SAMPLES_FILE)
    }


@pytest.fixture(scope="module")
def reference_run(tiny_model_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("one") / "run"
    single([*COMPARE, "--model", str(tiny_model_dir), "-o", str(folder), "--json"])
    return folder


@pytest.mark.model
def test_two_ranks_merge_into_one_run_with_the_same_tokens(tiny_model_dir, reference_run, tmp_path):
    folder = tmp_path / "two"
    done = launch([*COMPARE, "--model", str(tiny_model_dir), "-o", str(folder), "--json"])
    summary = json.loads(done.stdout)  # rank 0 prints the merged summary, the other rank nothing
    assert summary["complete"] and summary["records"] == summary["expected_records"]
    assert summary["ranks"]["world_size"] == 2
    assert [e["rank"] for e in summary["ranks"]["per_rank"]] == [0, 1]
    assert all(
        e["threads"] == max(1, (os.cpu_count() or 1) // 2) for e in summary["ranks"]["per_rank"]
    )
    records = read_records(folder / SAMPLES_FILE)
    assert len(records) == len(unique(records)) == summary["expected_records"]
    assert {r.environment["rank"] for r in records} == {0, 1}
    for sample in {r.sample_id for r in records}:  # every profile of a prompt on one rank
        assert len({r.environment["rank"] for r in records if r.sample_id == sample}) == 1
    assert tokens(folder) == tokens(reference_run)
    assert not list((folder / "ranks").glob("rank-*"))  # merged and removed
    plan = read_plan(folder)
    assert records == in_plan_order(records, plan)
    answers = sorted(p.name for p in (folder / "spec-bench" / "run_1").glob("*.jsonl"))
    assert answers == ["greedy.jsonl", "pld.jsonl"]


@pytest.mark.model
def test_resume_under_the_launcher_runs_only_what_is_missing(reference_run, tmp_path):
    """A sharded run killed mid-way: samples.jsonl holds some records, a rank file others, and
    the rest are missing. The resumed launch completes it with every record once."""
    folder = tmp_path / "killed"
    shutil.copytree(reference_run, folder)
    records = read_records(folder / SAMPLES_FILE)
    kept, in_rank_file = records[:3], records[3:5]
    (folder / SAMPLES_FILE).write_text("".join(json.dumps(r.to_json()) + "\n" for r in kept))
    (folder / "ranks").mkdir()
    cut = json.dumps(records[5].to_json())[:40]  # a record the kill left half written
    (folder / "ranks" / "rank-1.jsonl").write_text(
        "".join(json.dumps(r.to_json()) + "\n" for r in in_rank_file) + cut
    )
    launch(["compare", "--resume", str(folder), "--json"])
    after = read_records(folder / SAMPLES_FILE)
    assert len(after) == len(records) == len(unique(after))
    assert tokens(folder) == tokens(reference_run)
    untouched = {json.dumps(r.to_json(), sort_keys=True) for r in kept + in_rank_file}
    assert untouched <= {json.dumps(r.to_json(), sort_keys=True) for r in after}  # not run again


@pytest.mark.model
def test_merge_of_two_shards_equals_the_full_run(
    tiny_model_dir, reference_run, tmp_path, monkeypatch, capsys
):
    halves = []
    for i in range(2):
        half = tmp_path / f"half-{i}"
        args = [*COMPARE, "--model", str(tiny_model_dir), "--shard", f"{i}/2", "-o", str(half)]
        code, _, err = run_cli(monkeypatch, capsys, *args, "--json")
        assert code == 0, err
        halves.append(half)
    sizes = [len(read_records(h / SAMPLES_FILE)) for h in halves]
    full = json.loads((reference_run / "summary.json").read_text())
    assert sum(sizes) == full["records"] and min(sizes) > 0
    out = tmp_path / "all"
    code, stdout, err = run_cli(
        monkeypatch, capsys, "compare", "--merge", *map(str, halves), "-o", str(out), "--json"
    )
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["records"] == full["records"] and summary["complete"]
    assert tokens(out) == tokens(reference_run)
    records = read_records(out / SAMPLES_FILE)
    assert records == in_plan_order(records, read_plan(out))


def test_parse_shard():
    assert (parse_shard("1/4").rank, parse_shard("1/4").world) == (1, 4)
    for bad in ("4/4", "1", "a/b", "-1/2"):
        with pytest.raises(ConfigError, match="expected I/N"):
            parse_shard(bad)


def test_merge_refuses_another_plan_and_bad_arguments(tmp_path, monkeypatch, capsys):
    from decbench.compare import make_plan
    from decbench.compare.store import RunStore
    from decbench.profiles import method_profile
    from tests.tiny_sessions import tiny_suite

    def folder(name, repeat):
        plan = make_plan([method_profile("greedy")], tiny_suite(), repeat=repeat)
        plan.created = name
        RunStore.create(tmp_path / name, plan)
        return tmp_path / name

    a, b = folder("a", 1), folder("b", 2)
    with pytest.raises(ConfigError, match=r"made with another plan .*\(repeat: 1 vs 2\)"):
        merge_folders([a, b], tmp_path / "out")
    with pytest.raises(ConfigError, match="at least two"):
        merge_folders([a], tmp_path / "out")
    with pytest.raises(ConfigError, match="not merged"):
        merge_folders([a, a], a)
    code, _, err = run_cli(monkeypatch, capsys, "compare", "--merge", str(a), str(b))
    assert code == 2 and "--merge needs --output" in err
