"""ModelRunner: cache crop/compact and the 4D tree mask, checked against plain forwards."""

from __future__ import annotations

import torch

from tests.conftest import runner_for, tiny_llama, tiny_qwen2


def full_logits(runner, ids: list[int]) -> torch.Tensor:
    """Reference: logits of every position from one fresh forward. [n, vocab]"""
    with torch.inference_mode():
        return runner.model(torch.tensor([ids])).logits[0].float()


def test_incremental_forward_matches_full_forward(tiny_runner):
    ids = [3, 9, 4, 17, 22, 5, 8]
    expected = full_logits(tiny_runner, ids)
    tiny_runner.prefill(torch.tensor([ids[:4]]))
    got = tiny_runner.forward(torch.tensor([ids[4:]])).logits[0]
    torch.testing.assert_close(got, expected[4:], atol=1e-5, rtol=1e-5)
    assert tiny_runner.cache_len == len(ids)


def test_crop_rolls_back_to_an_earlier_state(tiny_runner):
    ids = [3, 9, 4, 17, 22]
    tiny_runner.prefill(torch.tensor([ids]))
    tiny_runner.forward(torch.tensor([[30, 31, 32]]))  # a rejected draft
    tiny_runner.crop(len(ids))
    assert tiny_runner.cache_len == len(ids)
    got = tiny_runner.forward(torch.tensor([[6]])).logits[0, -1]
    expected = full_logits(tiny_runner, [*ids, 6])[-1]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_tree_mask_gives_each_branch_its_own_path():
    """Two branches after a shared node, verified in one forward under a tree mask, equal the
    two paths run separately; compacting to one branch leaves a cache equal to that path."""
    for model in (tiny_llama(), tiny_qwen2()):
        runner = runner_for(model)
        prefix = [5, 6, 7]
        # nodes: 0 = 10 (root child), 1 = 11 (child of 0), 2 = 12 (child of 0), 3 = 13 (child of 2)
        tokens = [10, 11, 12, 13]
        parents = [-1, 0, 0, 2]
        depth = [0, 1, 1, 2]
        mask = torch.zeros(1, 4, 4, dtype=torch.bool)
        for i in range(4):
            j = i
            while j >= 0:
                mask[0, i, j] = True
                j = parents[j]
        positions = torch.tensor([[len(prefix) + d for d in depth]])
        runner.prefill(torch.tensor([prefix]))
        got = runner.forward(torch.tensor([tokens]), positions=positions, tree_mask=mask).logits[0]
        path_a = full_logits(runner, [*prefix, 10, 11])
        path_b = full_logits(runner, [*prefix, 10, 12, 13])
        torch.testing.assert_close(got[0], path_a[3], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[1], path_a[4], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[2], path_b[4], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[3], path_b[5], atol=1e-5, rtol=1e-5)
        runner.compact(len(prefix), torch.tensor([0, 2, 3]))
        assert runner.cache_len == 6
        nxt = runner.forward(torch.tensor([[14]])).logits[0, -1]
        torch.testing.assert_close(
            nxt, full_logits(runner, [*prefix, 10, 12, 13, 14])[-1], atol=1e-5, rtol=1e-5
        )


def test_timer_phases_do_not_double_count():
    from decbench.backends.timing import PhaseTimer

    timer = PhaseTimer()
    with timer.phase("outer"), timer.phase("inner"):
        sum(range(10000))
    totals = timer.snapshot()
    assert set(totals) == {"outer", "inner"}
    assert totals["outer"] < totals["inner"] + 1e-3


def test_host_phases_do_not_synchronise_the_device(monkeypatch):
    """The constraint phase is host work: it reads the clock without a device sync, while the
    other phases still synchronise on entry and exit."""
    from decbench.backends import timing

    calls = []
    monkeypatch.setattr(timing, "synchronize", lambda device: calls.append(device))
    timer = timing.PhaseTimer()
    with timer.phase("constraint"):
        pass
    assert calls == [] and "constraint" in timer.snapshot()
    with timer.phase("verify"):
        pass
    assert len(calls) == 2
