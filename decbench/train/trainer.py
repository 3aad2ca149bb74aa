"""The distillation loop shared by every draft kind (kinds.py: students, Medusa heads, EAGLE
drafts). The loop never branches on the kind: the kind's class builds the module, computes its
loss, walks held-out sequences and saves itself.

1. data: the target's greedy continuations of the prompts (data.py, cached); the last
   `heldout` sequences are never trained on. Medusa and EAGLE also cache the target's last
   hidden state of every sequence (data.last_hidden_states): the target is frozen and those
   drafts read nothing else from it, so its forward runs once, not once per step.
2. steps: a batch of sequences → the target's distributions (student: one target forward, no
   grad; medusa: `hidden @ lm_head.T` over the heads' vocabulary, from the cache) → the draft's
   logits → forward KL to the target's distributions (soft cross-entropy; over the subset for a
   reduced head) → AdamW. A running greedy acceptance estimate (draft argmax == the target's
   token) is reported. Medusa trains at the positions decoding drafts from: the last prompt
   token and the continuation. EAGLE (train/eagle.py) instead regresses the next feature and adds
   the KL of its next-token distribution, at the same positions.
3. every `checkpoint_every` steps an atomic checkpoint (temp file + rename) of the trained
   weights, the optimizer and the step; `resume` continues from it with the same batches.
4. the end: held-out acceptance rate and MAT for greedy chain drafting with K tokens, simulated
   exactly on the held-out continuations (teacher forcing gives the draft the very contexts it
   would see while its drafts keep matching), and for Medusa each head's top-1 and top-2
   accuracy; EAGLE runs its real incremental chain (drafts.eagle.EagleChain) on the target's cached
   features; the folder gets the draft and `distill.json` with the command, seed, data file and
   checksum, the loss log and the held-out numbers.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from decbench.backends.loader import load_runner
from decbench.errors import ConfigError
from decbench.models import artifact_path
from decbench.settings import BackendSettings, ModelSettings
from decbench.train.config import SCHEDULES, DistillConfig, flag
from decbench.train.data import Sequence, last_hidden_states, make_data, read_prompts, sha256
from decbench.train.heldout import HeldOut
from decbench.train.kinds import DraftKind, get_kind

CHECKPOINT = "checkpoint.pt"


@dataclass
class StepStats:
    step: int
    total: int
    loss: float
    acceptance: float  # running estimate of greedy per-token acceptance


@dataclass
class DistillReport:
    schema: str
    kind: str
    out: str
    steps: int
    resumed_from: int
    final_loss: float
    heldout: HeldOut
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def validate(config: DistillConfig) -> type[DraftKind]:
    """The kind's class, once every setting is checked."""
    kind = get_kind(config.kind)
    kind.check(config)
    if config.lr_schedule not in SCHEDULES:
        raise ConfigError(
            f"--lr-schedule: '{config.lr_schedule}' is not one of {', '.join(SCHEDULES)}"
        )
    for name in ("steps", "batch", "heads", "layers", "k", "unroll", "checkpoint_every", "seq_len"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{flag(name)} must be >= 1")
    if config.n_prompts <= config.heldout:
        raise ConfigError("--n-prompts must be larger than --heldout")
    return kind


def frequent_tokens(sequences: list[Sequence], n: int, specials: list[int]) -> torch.Tensor:
    counts: dict[int, int] = {}
    for s in sequences:
        for t in s.ids:
            counts[t] = counts.get(t, 0) + 1
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    chosen = list(dict.fromkeys([*specials, *ranked]))[:n]
    return torch.tensor(sorted(chosen))


def learning_rate(config: DistillConfig, step: int) -> float:
    """The rate of 0-based `step`: a function of the step alone, so a resumed run matches."""
    if config.lr_schedule == "constant":
        return config.lr
    warm = max(1, min(100, config.steps // 10))
    if step < warm:
        return config.lr * (step + 1) / warm
    return config.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, config.steps - warm)))


def pick(n: int, size: int, generator: torch.Generator) -> list[int]:
    """The indices of one batch's sequences (with replacement)."""
    return torch.randint(n, (size,), generator=generator).tolist()


def save_checkpoint(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def run_distill(
    config: DistillConfig,
    command: list[str],
    resume: bool = False,
    on_step: Callable[[StepStats], None] = lambda _s: None,
    progress: Callable[[str], None] = lambda _m: None,
) -> DistillReport:
    kind = validate(config)
    out = Path(config.out)
    checkpoint = out / CHECKPOINT
    if resume and not checkpoint.is_file():
        raise ConfigError(f"--resume: no checkpoint in {out} ({CHECKPOINT})")
    torch.manual_seed(config.seed)
    backend = BackendSettings(device=config.device, threads=config.threads)
    target = load_runner(ModelSettings(name=config.target), backend, progress)
    target.model.requires_grad_(False)
    source, prompts = read_prompts(config.prompts, config.n_prompts)
    progress(f"target continuations for {len(prompts)} prompts from {source} (cached)")
    data_path, sequences = make_data(
        target,
        config.target,
        prompts,
        config.max_new_tokens,
        on_progress=lambda i, n: progress(f"generated {i}/{n}"),
    )
    states = None
    if kind.uses_states:
        progress("the target's last hidden states of every sequence (cached)")
        states = last_hidden_states(
            target, data_path, sequences, on_progress=lambda i, n: progress(f"hidden {i}/{n}")
        )
    split = len(sequences) - config.heldout
    train, heldout = sequences[:split], sequences[split:]
    device = target.model.device
    subset = None
    if config.vocab_subset and not config.init:  # --init keeps the stored draft's subset
        subset = frequent_tokens(train, config.vocab_subset, list(target.eos_token_ids))
        subset = subset.to(device)  # indexes the target's LM head rows and the draft's logits
    distiller = kind(config, target, train, states and states[:split], subset)
    distiller.trained.to(device).train()  # Medusa heads are built on the host
    optimizer = torch.optim.AdamW(
        [p for p in distiller.trained.parameters() if p.requires_grad], lr=config.lr
    )
    start, log = 0, []
    if resume:
        saved = torch.load(checkpoint, weights_only=False)
        if saved["config"] != asdict(config) | {"out": str(config.out)}:
            raise ConfigError(
                f"--resume: {checkpoint} was made with other settings: {saved['config']}"
            )
        distiller.trained.load_state_dict(saved["trained"])
        optimizer.load_state_dict(saved["optimizer"])
        start, log = saved["step"], saved["log"]
        progress(f"resuming at step {start}")
    out.mkdir(parents=True, exist_ok=True)
    running = None
    loss_value = float("nan")
    for step in range(start, config.steps):
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        loss, hit = distiller.loss(pick(len(train), config.batch, generator), generator)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        optimizer.zero_grad()
        loss.backward()
        if kind.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(distiller.trained.parameters(), kind.grad_clip)
        optimizer.step()
        loss_value = loss.item()
        running = hit if running is None else 0.9 * running + 0.1 * hit
        on_step(StepStats(step + 1, config.steps, loss_value, running))
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            log.append(
                {"step": step + 1, "loss": round(loss_value, 4), "acceptance": round(running, 4)}
            )
            payload = {
                "config": asdict(config) | {"out": str(config.out)},
                "trained": distiller.state(),
                "optimizer": optimizer.state_dict(),
                "step": step + 1,
                "log": log,
            }
            save_checkpoint(checkpoint, payload)
    progress(f"held-out acceptance on {len(heldout)} sequences (K = {config.k})")
    result = distiller.heldout(heldout, states and states[split:])
    data = {
        "source": source,
        "file": str(data_path),
        "sha256": sha256(data_path),
        "sequences": len(sequences),
        "heldout": len(heldout),
    }
    record = {
        "target": config.target,
        "command": command,
        "seed": config.seed,
        "config": asdict(config) | {"out": str(config.out)},
        "data": data,
        "log": log,
        "heldout": asdict(result),
    }
    if config.init:  # the run it continued, so the recipe stays complete
        previous = artifact_path(config.init) / "distill.json"
        record["init"] = json.loads(previous.read_text()) if previous.is_file() else None
    write_outputs(out, distiller, record, target.tokenizer)
    return DistillReport(
        "decbench/distill/v1", config.kind, str(out), config.steps, start, loss_value, result, data
    )


def write_outputs(out: Path, distiller: DraftKind, record: dict, tokenizer) -> None:
    """Each final file is written in a temp folder and renamed into `out`; the checkpoint goes."""
    tmp = Path(tempfile.mkdtemp(prefix=".distill-", dir=out))
    try:
        distiller.save(tmp, record, tokenizer)
        (tmp / "distill.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        names = sorted(tmp.iterdir(), key=lambda p: p.name == distiller.marker)  # marker last
        for path in names:
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (out / CHECKPOINT).unlink(missing_ok=True)
