"""What every decoder declares and receives. Capabilities are data (MethodSpec), read by the CLI
and the engine; nothing dispatches on method names.

Declaring, not checking: a decoder's `Options` dataclass declares each option's range on the
field, `k: int = option(4, ge=1)  # draft tokens per step` (decbench/options.py), with rules
across fields in a `validate(self)` method. `samples=False` / `argmax=False` say which
temperatures the method honours and `needs_draft` that a `draft` option names a second model.
Each is enforced once, before any model loads: the ranges where the profile is read
(profiles.build), the rest in run.check_profile. A decoder built without a profile has its
options' ranges checked by Decoder.__init__ instead, so a subclass's `__init__` only checks what
needs the loaded model (k up to the vocabulary size)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from decbench.backends.runner import ModelRunner
from decbench.constraints.base import Constraint
from decbench.errors import ConfigError
from decbench.options import check_options
from decbench.results import GenerationResult
from decbench.settings import ConstraintSettings, GenerationSettings, SamplingSettings


@dataclass(frozen=True)
class MethodSpec:
    name: str
    summary: str  # one line for `decbench methods`
    paper: str  # citation: authors, title, year ("" for the plain baselines)
    lossless: bool  # output distribution equals the target's (greedy: token-identical)
    lossless_note: str = ""  # how, or why not
    lossy_option: str = ""  # a setting that makes a lossless method lossy (see is_lossless)
    needs_draft: bool = False  # loads a second model named by its `draft` option (checked early)
    emits_draft_probs: bool = False  # proposer supplies q(x), enabling rejection sampling
    supports_tree: bool = False  # verifies candidate trees (its trace steps carry a TreeTrace)
    drafts: bool = False  # proposes tokens that the target verifies (trace has drafts)
    samples: bool = True  # honours [sampling] temperature > 0 (else refused: check_sampling)
    argmax: bool = True  # honours temperature = 0 (sample and hf-sample need a temperature)
    reference: bool = False  # wraps transformers' own generate, for comparison only
    diffusion: bool = False  # drives a masked-diffusion denoiser; steps carry a CanvasTrace
    requires: frozenset[str] = frozenset()  # runner capabilities beyond the common interface
    constraints: bool = False  # honours a [constraint] (masks every token it commits)
    batches: bool = False  # decodes several requests as one ragged batch (`generate_batch`)

    def check_sampling(self, sampling: SamplingSettings) -> None:
        """Refuse [sampling] settings this method cannot honour: a temperature for a
        deterministic method, temperature 0 for a method that only samples. run.check_profile
        asks this before any model loads; no decoder repeats it."""
        if not self.samples and not sampling.greedy:
            raise ConfigError(
                f"method '{self.name}' is deterministic and does not sample "
                f"(sampling.temperature = {sampling.temperature}); set the temperature to 0 "
                "or choose a sampling method such as sample or speculative"
            )
        if not self.argmax and sampling.greedy:
            raise ConfigError(
                f"method '{self.name}' samples: it needs sampling.temperature > 0 (try "
                "--temperature 0.8); for temperature 0 choose an argmax method such as greedy"
            )


@dataclass
class Request:
    """One generation: token ids in, settings, and a sink for streamed tokens."""

    prompt: str  # the user's text, for the record
    prompt_ids: list[int]  # [n_prompt] after the chat template
    generation: GenerationSettings
    sampling: SamplingSettings
    on_tokens: Callable[[list[int]], None] | None = None  # called with newly committed ids
    tokenize_s: float = 0.0
    constraint: Constraint | None = None  # what the output must be (decbench/constraints)


@dataclass
class DecoderContext:
    """What a decoder may need besides its target: a way to load other models by name (with the
    profile's backend settings), and a progress sink on stderr."""

    load_model: Callable[[str], ModelRunner]
    progress: Callable[[str], None] = field(default=lambda _msg: None)
    # the options run.open_session checked before loading (profiles.build, run.check_profile);
    # Decoder.__init__ checks any other options it is given
    checked_options: Any = None


@dataclass
class NoOptions:
    """For decoders without parameters of their own."""


class Decoder(ABC):
    spec: ClassVar[MethodSpec]
    # a dataclass; its defaults are the method's defaults, its ranges declared with option()
    Options: ClassVar[type] = NoOptions

    def __init__(self, target: ModelRunner, options: Any, ctx: DecoderContext) -> None:
        if options is not ctx.checked_options:  # built without a profile (tests, library use)
            check_options(options)  # declared ranges and validate() (decbench/options.py)
        self.target = target
        self.options = options
        self.ctx = ctx

    @classmethod
    def is_lossless(cls, options: Any) -> bool:
        """Lossless with these options (a method may offer a lossy option, e.g. Medusa's typical
        acceptance); everything that reports losslessness asks this, not spec.lossless."""
        return cls.spec.lossless

    @classmethod
    def takes_constraint(cls, options: Any, settings: ConstraintSettings) -> Any | None:
        """For a method that honours a [constraint] by its own search rather than by token masks
        (spec.constraints): its options with the constraint folded in, or None where it cannot
        honour this one. run.open_session asks this before refusing the constraint."""
        return None

    @abstractmethod
    def generate(self, request: Request) -> GenerationResult:
        """Decode one request from a fresh cache."""

    def plan(self, request: Request, row: int = 0) -> Any:
        """For a method that `batches`: how `request` runs as row `row` of a batch (an
        engine.RowPlan: its own proposer instance, acceptance rules, prefill options)."""
        raise ConfigError(f"method '{self.spec.name}' runs at batch 1 only")

    def generate_batch(self, requests: list[Request]) -> list[GenerationResult]:
        """Decode `requests` together as one ragged batch (decoders/batch.py); each result is
        the one `generate` gives for the request alone. Refused by methods that do not batch."""
        from decbench.decoders.batch import decode_batch

        return decode_batch(self, requests)
