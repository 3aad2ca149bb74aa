"""The library entry points the CLI calls: build a decoder from a profile and run prompts."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from decbench.backends.capabilities import check_supported
from decbench.backends.kernels import in_use as kernels_in_use
from decbench.backends.loader import load_runner
from decbench.backends.runner import ModelRunner
from decbench.backends.static import runner_facts
from decbench.constraints.base import Constraint
from decbench.constraints.build import SEARCH_KINDS, build_constraint
from decbench.decoders.base import Decoder, DecoderContext, Request
from decbench.decoders.registry import get_decoder
from decbench.environment import environment
from decbench.errors import ConfigError
from decbench.measure import measure, timed_ids
from decbench.metrics.quality import agreement, coherence, text_metrics
from decbench.models import fingerprint
from decbench.options import check_options
from decbench.profiles import Profile
from decbench.results import GenerationResult
from decbench.settings import ModelSettings


@dataclass
class Session:
    """A loaded profile: target runner plus decoder, reusable across prompts."""

    profile: Profile
    target: ModelRunner
    decoder: Decoder
    constraint: Constraint | None = None  # compiled from profile.constraint

    def encode(self, prompt: str, raw: bool = False) -> list[int]:
        return encode_prompt(self.target, prompt, self.profile, raw)

    def request(
        self,
        prompt: str,
        prompt_ids: list[int],
        tokenize_s: float = 0.0,
        on_tokens: Callable[[list[int]], None] | None = None,
        max_new_tokens: int | None = None,
        constraint: Constraint | None = None,
    ) -> Request:
        """A request under this session's settings; `constraint` defaults to the session's."""
        generation = self.profile.generation
        if max_new_tokens is not None:
            generation = dataclasses.replace(generation, max_new_tokens=max_new_tokens)
        return Request(
            prompt=prompt,
            prompt_ids=prompt_ids,
            generation=generation,
            sampling=self.profile.sampling,
            on_tokens=on_tokens,
            tokenize_s=tokenize_s,
            constraint=constraint or self.constraint,
        )

    def generate(
        self,
        prompt: str,
        raw: bool = False,
        on_tokens: Callable[[list[int]], None] | None = None,
        prompt_ids: list[int] | None = None,
        quality: bool = False,
        scorer: ModelRunner | None = None,
    ) -> GenerationResult:
        """One prompt, measured (decbench/measure.py), with its environment and text metrics."""
        if prompt_ids is None:
            ids, tokenize_s = timed_ids(lambda: self.encode(prompt, raw))
        else:
            ids, tokenize_s = prompt_ids, 0.0
        result = measure(self, self.request(prompt, ids, tokenize_s, on_tokens)).result
        result.environment = self.environment()
        result.quality = text_metrics(result.token_ids)  # cheap: counts over token ids
        if quality:
            self.score_quality(result, ids, scorer)
        return result

    def score_quality(
        self, result: GenerationResult, prompt_ids: list[int], scorer: ModelRunner | None = None
    ) -> None:
        """Add the metrics that cost model forwards to `result.quality`: coherence under
        `scorer` (default: the target; one forward over prompt + continuation) and, for lossy
        methods, agreement with greedy on the same prompt (one greedy run of the target)."""
        result.quality["coherence"] = coherence(scorer or self.target, prompt_ids, result.token_ids)
        result.quality["coherence_scorer"] = (scorer or self.target).name
        if self.decoder.is_lossless(self.decoder.options):
            return
        reference = self.reference_decoder()
        sampling = dataclasses.replace(self.profile.sampling, temperature=0.0)
        request = Request(result.prompt, prompt_ids, self.profile.generation, sampling)
        request.constraint = self.constraint
        result.quality.update(agreement(result.token_ids, reference.generate(request).token_ids))
        result.quality["agreement_reference"] = reference.spec.name

    def reference_decoder(self) -> Decoder:
        """What a lossy method's agreement is measured against: greedy for autoregressive
        methods; for diffusion methods the reference decoding, dllm-confidence, with the same
        block length (one position per step)."""
        if not self.decoder.spec.diffusion:
            cls = get_decoder("greedy")
            return cls(self.target, cls.Options(), self.decoder.ctx)
        cls = get_decoder("dllm-confidence")
        block = getattr(self.decoder.options, "block_length", cls.Options().block_length)
        return cls(self.target, cls.Options(block_length=block), self.decoder.ctx)

    def environment(self) -> dict:
        backend = self.profile.backend
        folder = self.target.folder
        return environment(
            backend.device,
            backend.dtype,
            model=self.profile.model.name,
            model_fingerprint=fingerprint(folder) if folder else None,
            **self._kernels(),
            **runner_facts(self.target),
            seed=self.profile.sampling.seed,
            backend=backend.name,
            **getattr(self.target, "environment", dict)(),  # backend-specific facts, if any
        )

    def _kernels(self) -> dict:
        """Which decode kernels ran and why (backends/kernel_check.py); transformers only."""
        choice = getattr(self.target, "kernels", None)
        if choice is None:
            return {"kernels": None, "kernel_check": None}
        return {"kernels": kernels_in_use(self.target.model), "kernel_check": choice.to_dict()}


def open_session(
    profile: Profile,
    progress: Callable[[str], None] | None = None,
    target: ModelRunner | None = None,
    per_sample: bool = False,
) -> Session:
    """Load the profile's model (unless given) and build its decoder. With `per_sample` a
    json-schema constraint may take its schema from each suite sample (compare)."""
    decoder_cls, options = check_profile(profile)
    say = progress or (lambda _msg: None)
    if target is None:
        target = load_runner(profile.model, profile.backend, say)
    constraint = None
    if masks_constraint(profile, decoder_cls):
        constraint = build_constraint(
            profile.constraint,
            target.tokenizer,
            target.vocab_size,
            list(target.eos_token_ids),
            per_sample,
        )

    def load_model(name: str) -> ModelRunner:
        return load_runner(ModelSettings(name=name), profile.backend, say)

    # check_profile vouched for these options (profiles.build checked their ranges): the decoder
    # does not check them again
    ctx = DecoderContext(load_model=load_model, progress=say, checked_options=options)
    decoder = decoder_cls(target, options, ctx)
    return Session(profile, target, decoder, constraint)


def check_profile(profile: Profile) -> tuple[type[Decoder], Any]:
    """Refuse, before any model loads, what the profile alone shows to be wrong across its
    tables: a method its backend cannot run, a temperature the method cannot honour
    (MethodSpec.samples / argmax), a constraint the method cannot honour or that breaks its
    options once folded in, and, for a method that needs_draft, a draft name that can name no
    model. Each table's own ranges were checked when the profile was built (profiles.build).
    Returns the decoder class and the options to build it with."""
    decoder_cls = get_decoder(profile.method)
    check_supported(profile.method, decoder_cls.spec.requires, profile.backend.name)
    decoder_cls.spec.check_sampling(profile.sampling)
    options = constrained_options(profile, decoder_cls)
    if decoder_cls.spec.needs_draft:  # the registry guarantees a `draft` option
        from decbench.decoders.speculative.draft_model import check_draft_name

        check_draft_name(options.draft)
    return decoder_cls, options


def masks_constraint(profile: Profile, decoder_cls: type[Decoder]) -> bool:
    """The [constraint] table goes to build_constraint (token masks; kind "" only has its keys
    checked) rather than into the method's own search."""
    kind = profile.constraint.kind
    return kind not in SEARCH_KINDS and (not kind or decoder_cls.spec.constraints)


def constrained_options(profile: Profile, decoder_cls: type[Decoder]) -> Any:
    """The method's options, with a [constraint] that the method's own search honours folded in
    (grid-beam's include phrases, dllm-dingo's regex). A constraint the method can neither mask
    nor take is refused before loading."""
    settings = profile.constraint
    kind = settings.kind
    if not kind:
        return profile.options
    if masks_constraint(profile, decoder_cls):
        return profile.options  # masked where logits become tokens (sampler.py)
    if kind == "include" and not [p for p in settings.include if p.strip()]:
        raise ConfigError("constraint.include: an include constraint needs at least one phrase")
    taken = decoder_cls.takes_constraint(profile.options, settings)
    if taken is not None:
        check_options(taken)  # new options, which profiles.build never saw
        return taken
    if kind in SEARCH_KINDS:
        raise ConfigError(
            f"method '{profile.method}' cannot honour an {kind} constraint (no token mask can "
            "express it); use --method grid-beam"
        )
    raise ConfigError(
        f"method '{profile.method}' cannot honour a {kind} constraint (it does not mask the "
        f"tokens it commits); use greedy, sample or a speculative method such as pld"
        + (" (dLLMs: dllm-dingo with a regex)" if decoder_cls.spec.diffusion else "")
    )


def encode_prompt(target: ModelRunner, prompt: str, profile: Profile, raw: bool) -> list[int]:
    """Tokenise, applying the chat template for chat models unless raw."""
    if not prompt.strip():
        raise ConfigError("the prompt is empty")
    tokenizer = target.tokenizer
    if tokenizer is None:
        raise ConfigError(f"model '{target.name}' has no tokenizer; pass token ids instead")
    gen = profile.generation
    if gen.chat and not raw and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}]
        if gen.system:
            messages.insert(0, {"role": "system", "content": gen.system})
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if not isinstance(ids, list):
            ids = ids["input_ids"]
    else:
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    if torch.is_tensor(ids):
        ids = ids.tolist()
    limit = target.max_context
    if len(ids) >= limit:
        raise ConfigError(
            f"the prompt is {len(ids)} tokens, but '{target.name}' has a context of {limit} "
            f"tokens; shorten the prompt"
        )
    return list(ids)
