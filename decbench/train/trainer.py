"""The distillation loop shared by students, Medusa heads and EAGLE drafts.

1. data: the target's greedy continuations of the prompts (data.py, cached); the last
   `heldout` sequences are never trained on. Medusa and EAGLE also cache the target's last
   hidden state of every sequence (data.last_hidden_states): the target is frozen and those
   drafts read nothing else from it, so its forward runs once, not once per step.
2. steps: a batch of sequences → the target's distributions (student: one target forward, no
   grad; medusa: `hidden @ lm_head.T` over the heads' vocabulary, from the cache) → the draft's
   logits → forward KL to the target's distributions (soft cross-entropy; over the subset for a
   reduced head) → AdamW. A running greedy acceptance estimate (draft argmax == the target's
   token) is reported. Medusa trains at the positions decoding drafts from: the last prompt
   token and the continuation. EAGLE (eagle.py) instead regresses the next feature and adds
   the KL of its next-token distribution, at the same positions.
3. every `checkpoint_every` steps an atomic checkpoint (temp file + rename) of the trained
   weights, the optimizer and the step; `resume` continues from it with the same batches.
4. the end: held-out acceptance rate and MAT for greedy chain drafting with K tokens, simulated
   exactly on the held-out continuations (teacher forcing gives the draft the very contexts it
   would see while its drafts keep matching), and for Medusa each head's top-1 and top-2
   accuracy; EAGLE runs its real incremental chain (eagle.EagleChain) on the target's cached
   features; the folder gets the draft and `distill.json` with the command, seed, data file and
   checksum, the loss log and the held-out numbers.
"""

from __future__ import annotations

import itertools
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
from decbench.train import eagle, medusa, student
from decbench.train.data import Sequence, last_hidden_states, make_data, read_prompts, sha256
from decbench.train.stored import check_fits

KINDS = ("student", "medusa", "eagle")
SCHEDULES = ("constant", "cosine")
CHECKPOINT = "checkpoint.pt"


@dataclass
class DistillConfig:
    target: str
    kind: str  # student | medusa | eagle
    out: Path
    layers: int = 2  # student: decoder layers kept (evenly spaced)
    vocab_subset: int = 0  # head over the N most frequent tokens; 0 = full vocabulary
    heads: int = 3  # medusa: number of heads
    steps: int = 200
    batch: int = 4
    seq_len: int = 192  # tokens per training sequence, longer ones cut (medusa: after the prompt)
    lr: float = 5e-4
    lr_schedule: str = "constant"  # constant | cosine (warm-up, then cosine decay to 0)
    seed: int = 0
    prompts: str | None = None  # file or suite name; None = decbench.train.prompts
    n_prompts: int = 128
    heldout: int = 8
    max_new_tokens: int = 96
    checkpoint_every: int = 25
    k: int = 4  # draft length for the held-out estimate
    unroll: int = 1  # eagle: training passes, pass s trains the chain's s-th token
    init: str | None = None  # eagle: start from this trained draft (its weights and subset)
    threads: int = 0
    device: str = "cpu"


@dataclass
class StepStats:
    step: int
    total: int
    loss: float
    acceptance: float  # running estimate of greedy per-token acceptance


@dataclass
class HeldOut:
    acceptance_rate: float  # accepted / drafted
    mat: float  # mean tokens per target step, bonus included
    sequences: int
    head_top1: list[float] = field(default_factory=list)  # medusa: [heads] top-1 accuracy
    head_top2: list[float] = field(default_factory=list)  # medusa: [heads] top-2 accuracy


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


def validate(config: DistillConfig) -> None:
    if config.kind not in KINDS:
        raise ConfigError(f"--kind: '{config.kind}' is not one of {', '.join(KINDS)}")
    if config.init and config.kind != "eagle":
        raise ConfigError("--init: only --kind eagle starts from a trained draft")
    if config.lr_schedule not in SCHEDULES:
        raise ConfigError(
            f"--lr-schedule: '{config.lr_schedule}' is not one of {', '.join(SCHEDULES)}"
        )
    for name in ("steps", "batch", "heads", "layers", "k", "unroll", "checkpoint_every", "seq_len"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    if config.n_prompts <= config.heldout:
        raise ConfigError("--n-prompts must be larger than --heldout")


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


def make_batch(rows: list[Sequence], seq_len: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([b, n] ids, [b, n] bool mask of real tokens), right-padded."""
    cut = [r.ids[:seq_len] for r in rows]
    width = max(len(r) for r in cut)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in cut])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in cut]).bool()
    return ids, mask


def soft_cross_entropy(draft_logits, target_logits, subset=None) -> torch.Tensor:
    """Σ_v p(v) · -log q(v) per position ([..., vocab] -> [...]); over `subset` when given."""
    if subset is not None:
        draft_logits, target_logits = draft_logits[..., subset], target_logits[..., subset]
    p = target_logits.softmax(-1)
    return -(p * draft_logits.log_softmax(-1)).sum(-1)


class Distiller:
    """Holds the target, the trained module and how to compute the loss for one kind."""

    def __init__(
        self,
        config: DistillConfig,
        target,
        sequences: list[Sequence],
        states: list[torch.Tensor] | None = None,  # medusa, eagle: [n_i, hidden] per sequence
    ) -> None:
        self.config = config
        self.target = target.model
        self.sequences, self.states = sequences, states
        self.pad = target.tokenizer.pad_token_id or 0
        self.subset = None
        if config.vocab_subset:
            specials = list(target.eos_token_ids)
            self.subset = frequent_tokens(sequences, config.vocab_subset, specials)
        if config.kind == "student":
            total = len(self.target.model.layers)
            self.layers = student.pick_layers(total, config.layers)
            self.draft = student.build_student(self.target, self.layers, self.subset)
            self.trained = student.trainable(self.draft)
        elif config.kind == "medusa":
            hidden = self.target.config.hidden_size
            self.heads = medusa.MedusaHeads(hidden, config.heads, self.subset)
            self.head_rows = self.heads.rows(self.target.get_output_embeddings().weight)
            self.trained = self.heads
        else:
            if config.init:
                self.eagle, record = eagle.load_eagle(artifact_path(config.init))
                weight = self.target.get_output_embeddings().weight
                hidden, subset = self.eagle.shape.hidden, self.eagle.subset
                check_fits("--init", config.init, hidden, subset, record, config.target, weight)
                self.eagle.requires_grad_(True)
                self.subset = self.eagle.subset
            else:
                shape = eagle.EagleShape.of(self.target.config)
                self.eagle = eagle.EagleDraft(shape, self.subset)
            self.eagle.to(self.target.device)
            self.head_rows = self.eagle.rows(self.target.get_output_embeddings().weight)
            self.embed = self.target.get_input_embeddings().weight
            self.trained = self.eagle
        self.trained.train()

    def loss(
        self, picks: list[int], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, float]:
        """(mean loss, fraction of positions where the draft's argmax is the target's)."""
        if self.config.kind == "medusa":
            return self.medusa_loss(picks)
        if self.config.kind == "eagle":
            return self.eagle_loss(picks, generator)
        rows = [self.sequences[i] for i in picks]
        ids, mask = (
            x.to(self.target.device) for x in make_batch(rows, self.config.seq_len, self.pad)
        )
        with torch.no_grad():
            target_logits = self.target(input_ids=ids, attention_mask=mask).logits.float()
        draft_logits = self.draft(input_ids=ids, attention_mask=mask).logits.float()
        losses = soft_cross_entropy(draft_logits, target_logits, self.subset)  # [b, n]
        hits = draft_logits.argmax(-1) == target_logits.argmax(-1)
        loss = (losses * mask).sum() / mask.sum()
        return loss, (hits & mask).sum().item() / max(mask.sum().item(), 1)

    def medusa_loss(self, picks: list[int]) -> tuple[torch.Tensor, float]:
        """The batch's rows packed from the last prompt token on (where decoding drafts from).
        Head k at t learns the target's distribution at t+k+1 over the heads' vocabulary, while
        the token it predicts (t+k+2) is in the data: a greedy continuation, so that token is
        the target's argmax there."""
        parts, truth, starts = [], [], [0]
        for i in picks:
            seq = self.sequences[i]
            first = seq.prompt_len - 1
            end = min(len(seq.ids), first + self.config.seq_len)
            parts.append(self.states[i][first:end])
            truth += seq.ids[first:end]
            starts.append(starts[-1] + len(parts[-1]))
        device = self.head_rows.device
        hidden = torch.cat(parts).to(device, torch.float32)  # [T, hidden]
        truth = torch.tensor(truth, device=device)  # [T]
        target_logits = hidden @ self.head_rows.t()  # [T, v'] the target's, over the subset
        head_logits = self.heads(hidden, self.head_rows)  # [T, heads, v']
        losses, hits = [], []
        for k in range(self.config.heads):
            shift = k + 1
            at = torch.cat(  # [T_k] positions whose token t+k+2 is in the same row
                [torch.arange(a, max(a, b - shift - 1)) for a, b in itertools.pairwise(starts)]
            ).to(device)
            q = head_logits[at, k]  # [T_k, v']
            losses.append(soft_cross_entropy(q, target_logits[at + shift]))
            hits.append(self.heads.token_ids(q.argmax(-1)) == truth[at + shift + 1])
        losses, hits = torch.cat(losses), torch.cat(hits)
        return losses.sum() / max(len(losses), 1), hits.sum().item() / max(len(hits), 1)

    def eagle_loss(
        self, picks: list[int], generator: torch.Generator | None
    ) -> tuple[torch.Tensor, float]:
        """Whole rows from the start (the draft attends over the prompt's features too), cut at
        `seq_len`, right-padded; features from the cache. Only the rows decoding drafts from
        count: the last prompt token's and the continuation's."""
        rows = [self.sequences[i] for i in picks]
        ids, mask = make_batch(rows, self.config.seq_len, self.pad)
        features = torch.zeros(*ids.shape, self.head_rows.shape[1])
        scored = torch.zeros(ids.shape[0], ids.shape[1] - 1, dtype=torch.bool)
        for row, i in enumerate(picks):
            n = int(mask[row].sum())
            features[row, :n] = self.states[i][:n].float()
            scored[row, rows[row].prompt_len - 1 :] = True
        device = self.head_rows.device
        return eagle.eagle_loss(
            self.eagle,
            self.embed,
            self.head_rows,
            ids.to(device),
            features.to(device),
            mask.to(device),
            generator,
            scored.to(device),
            self.config.unroll,
        )

    @torch.no_grad()
    def heldout(
        self, sequences: list[Sequence], states: list[torch.Tensor] | None = None
    ) -> HeldOut:
        """Greedy chain drafting simulated on each held-out continuation (walk_chains)."""
        self.trained.eval()
        heads = self.config.heads if self.config.kind == "medusa" else 0
        top, positions = torch.zeros(2, heads), torch.zeros(heads)  # [top-1/2, heads], [heads]
        walked: list[tuple[int, int]] = []
        for index, seq in enumerate(sequences):
            truth, start = seq.ids, seq.prompt_len
            if self.config.kind == "student":
                ids = torch.tensor([truth], device=self.target.device)
                preds = self.draft(input_ids=ids).logits[0].argmax(-1).tolist()
                # the draft's guess for position c + i + 1 is its prediction at c + i
                walked += walk_chains(truth, start, self.config.k, lambda c, k, p=preds: p[c:])
            elif self.config.kind == "medusa":
                hidden = states[index].to(self.head_rows.device, torch.float32)  # [n, hidden]
                head = self.heads(hidden, self.head_rows)  # [n, heads, v']
                hits, count = head_hits(head, truth, seq.prompt_len - 1, self.heads.token_ids)
                top, positions = top + hits, positions + count
                preds = self.heads.token_ids(head.argmax(-1)).tolist()  # [n][heads]
                # drafts at pending position c come from the hidden state at c - 1
                walked += walk_chains(truth, start, heads, lambda c, k, p=preds: p[c - 1])
            else:  # the draft's real incremental chain on the target's features
                chain = eagle.EagleChain(self.eagle, self.embed, self.head_rows)
                features = states[index].to(self.head_rows.device, torch.float32)
                chain.extend(features[:start], truth[1 : start + 1])

                def accepted(c: int, a: int, chain=chain, features=features, truth=truth):
                    after = truth[c + 1 : c + a + 2]  # short at the end: no bonus in the data
                    chain.extend(features[c : c + len(after)], after)

                walked += walk_chains(
                    truth, start, self.config.k, lambda c, k, ch=chain: ch.chain(k), accepted
                )
        self.trained.train()
        accepted_tokens = sum(a for a, _ in walked)
        drafted = sum(k for _, k in walked)
        tokens = accepted_tokens + len(walked)  # each step also emits the bonus
        top1, top2 = (top / positions.clamp(min=1)).tolist()
        return HeldOut(
            accepted_tokens / max(drafted, 1),
            tokens / max(len(walked), 1),
            len(sequences),
            top1,
            top2,
        )

    def state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.trained.state_dict().items()}

    def save(self, folder: Path, record: dict, tokenizer) -> None:
        if self.config.kind == "student":
            student.save_student(self.draft, folder, {**record, "layers": self.layers})
            tokenizer.save_pretrained(folder)
            if getattr(self.target, "generation_config", None) is not None:
                self.target.generation_config.save_pretrained(folder)
        elif self.config.kind == "medusa":
            medusa.save_heads(self.heads, folder, record)
        else:
            eagle.save_eagle(self.eagle, folder, record)


def walk_chains(
    truth: list[int],  # prompt + the target's greedy continuation
    start: int,  # the first pending position (the prompt's length)
    depth: int,  # tokens drafted per step (fewer near the end)
    guesses: Callable[[int, int], list[int]],  # (pending c, k) -> guesses for c+1, c+2, ...
    accepted: Callable[[int, int], None] = lambda _c, _a: None,  # told (c, a) after each step
) -> list[tuple[int, int]]:
    """[(accepted, drafted)] of each step of greedy chain drafting along `truth`: teacher forcing
    gives the draft the very contexts decoding would while its guesses keep matching."""
    steps, c = [], start
    while c < len(truth) - 1:
        k = min(depth, len(truth) - 1 - c)
        guess = guesses(c, k)
        a = 0
        while a < k and guess[a] == truth[c + a + 1]:
            a += 1
        steps.append((a, k))
        accepted(c, a)
        c += a + 1
    return steps


def head_hits(
    head_logits: torch.Tensor,  # [n, heads, v'] at every position of one sequence
    truth: list[int],  # [n] the sequence
    first: int,  # the first position drafts are read from
    token_ids: Callable[[torch.Tensor], torch.Tensor],  # heads' output index -> token id
) -> tuple[torch.Tensor, torch.Tensor]:
    """([2, heads] positions where head k's top-1 / top-2 holds token t+k+2, [heads] positions)."""
    n, heads, vocab = head_logits.shape
    top2 = token_ids(head_logits.topk(min(2, vocab)).indices).cpu()  # [n, heads, 2]
    ids = torch.tensor(truth)
    hits, counts = torch.zeros(2, heads), torch.zeros(heads)
    for k in range(heads):
        at = torch.arange(first, max(first, n - k - 2))
        got, want = top2[at, k], ids[at + k + 2]  # [m, 2], [m]
        hits[0, k] = (got[:, 0] == want).sum()
        hits[1, k] = (got == want[:, None]).any(-1).sum()
        counts[k] = len(at)
    return hits, counts


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
    validate(config)
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
    if config.kind in ("medusa", "eagle"):
        progress("the target's last hidden states of every sequence (cached)")
        states = last_hidden_states(
            target, data_path, sequences, on_progress=lambda i, n: progress(f"hidden {i}/{n}")
        )
    split = len(sequences) - config.heldout
    train, heldout = sequences[:split], sequences[split:]
    distiller = Distiller(config, target, train, states and states[:split])
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
        if config.kind == "eagle":
            torch.nn.utils.clip_grad_norm_(distiller.trained.parameters(), eagle.GRAD_CLIP)
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


def write_outputs(out: Path, distiller: Distiller, record: dict, tokenizer) -> None:
    """Each final file is written in a temp folder and renamed into `out`; the checkpoint goes."""
    tmp = Path(tempfile.mkdtemp(prefix=".distill-", dir=out))
    try:
        distiller.save(tmp, record, tokenizer)
        (tmp / "distill.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        markers = {student.MARKER, medusa.MARKER, eagle.MARKER}
        names = sorted(tmp.iterdir(), key=lambda p: p.name in markers)  # marker last
        for path in names:
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (out / CHECKPOINT).unlink(missing_ok=True)
