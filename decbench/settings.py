"""The settings tables every profile has. Each field's default lives here and nowhere else, and
so does its range, declared with `option` as a method's options declare theirs
(decbench/options.py); profiles.build checks them when a profile is read ("sampling.top_p must
be in (0, 1], got 1.5").

A method's own options are a dataclass declared next to the decoder (see decoders/base.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from decbench.models import DEFAULT_MODEL
from decbench.options import option


@dataclass
class ModelSettings:
    name: str = DEFAULT_MODEL  # alias, local folder or cached HF id
    trust_remote_code: bool = False  # never on unless the user says so
    # "" loads the whole model onto backend.device; "auto" (or "balanced", "sequential") spreads
    # it over the GPUs, the CPU and disk with accelerate's big-model inference
    device_map: str = ""
    max_memory: dict[str, str] = field(default_factory=dict)  # with device_map: {"0" = "20GiB"}


@dataclass
class BackendSettings:
    name: str = "transformers"  # transformers | llama.cpp (GGUF models through llama-cpp-python)
    device: str = "cpu"  # cpu | cuda | cuda:N | mps
    dtype: str = "float32"  # float32 | bfloat16 | float16
    threads: int = 0  # torch intra-op threads (llama.cpp: its threads); 0 = the library's default
    kernels: str = "auto"  # auto | decbench | stock: decode-time CPU kernels (backends/kernels.py)
    n_ctx: int = 4096  # llama.cpp only: KV cache cells (prompt + generated + one verify block)
    n_batch: int = 512  # llama.cpp only: tokens per llama_decode (n_batch = n_ubatch)
    runner: str = "eager"  # eager (DynamicCache) | static (pre-allocated cache, backends/static.py)
    compile: bool = True  # static runner: torch.compile its decode forwards (CUDA graphs on GPU)


@dataclass
class GenerationSettings:
    max_new_tokens: int = option(128, gt=0)
    stop: list[str] = field(default_factory=list)  # stop strings (the text keeps them)
    chat: bool = True  # apply the chat template when the tokenizer has one
    system: str = ""  # system message for the chat template; "" = the template's default


@dataclass
class SamplingSettings:
    """temperature 0 is greedy. Every decoder that samples applies these the same way (sampler.py)."""

    temperature: float = option(0.0, ge=0)
    top_k: int = option(0, ge=0)  # 0 = off
    top_p: float = option(1.0, gt=0, le=1)  # nucleus; 1 = off
    min_p: float = option(0.0, ge=0, lt=1)  # 0 = off
    typical_p: float = option(1.0, gt=0, le=1)  # locally typical sampling; 1 = off
    repetition_penalty: float = option(1.0, gt=0)  # CTRL-style; 1 = off
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class ConstraintSettings:
    """What the output must be (decbench/constraints). kind "" = unconstrained."""

    kind: str = option("", choices=("", "allow", "json-schema", "grammar", "include"))
    schema: str = ""  # json-schema: path of the schema file
    file: str = ""  # allow: the allow-list (one sequence a line); grammar: a Lark grammar file
    lark: str = ""  # grammar: Lark grammar text (instead of file)
    regex: str = ""  # grammar: a regular expression the whole output must match
    # allow: each line is text (tokenized) or "ids" (token ids, spaces between)
    tokens: str = option("text", choices=("text", "ids"))
    include: list[str] = field(default_factory=list)  # include: phrases the output must contain
