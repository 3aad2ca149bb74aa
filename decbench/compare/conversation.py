"""Prompt ids for each turn of a sample. Turn 1 is encoded exactly as `decbench generate`
encodes a prompt; turn i > 1 is the whole conversation so far, with the model's own earlier
answers as assistant messages (MT-Bench / Spec-Bench style)."""

from __future__ import annotations

import torch

from decbench.backends.runner import ModelRunner
from decbench.errors import ConfigError
from decbench.profiles import Profile
from decbench.run import encode_prompt


def encode_turn(
    target: ModelRunner, profile: Profile, turns: list[str], answers: list[str]
) -> list[int]:
    """Ids for the last of `turns` ([n] user messages) after `answers` ([n-1] model answers)."""
    if len(answers) != len(turns) - 1:
        raise ValueError("encode_turn needs one answer per earlier turn")
    if len(turns) == 1:
        return encode_prompt(target, turns[0], profile, raw=False)
    tokenizer = target.tokenizer
    if tokenizer is None:
        raise ConfigError(f"model '{target.name}' has no tokenizer to encode a conversation")
    gen = profile.generation
    if gen.chat and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            _messages(turns, answers, gen.system), add_generation_prompt=True, tokenize=True
        )
        if not isinstance(ids, list):
            ids = ids["input_ids"]
    else:
        history = [text for pair in zip(turns, [*answers, ""], strict=True) for text in pair]
        ids = tokenizer("\n\n".join(t for t in history if t), add_special_tokens=True)["input_ids"]
    if torch.is_tensor(ids):
        ids = ids.tolist()
    if len(ids) >= target.max_context:
        raise ConfigError(
            f"turn {len(turns)} of a conversation is {len(ids)} tokens, over the context of "
            f"'{target.name}' ({target.max_context}); lower max_new_tokens"
        )
    return list(ids)


def _messages(turns: list[str], answers: list[str], system: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    for i, user in enumerate(turns):
        messages.append({"role": "user", "content": user})
        if i < len(answers):
            messages.append({"role": "assistant", "content": answers[i]})
    return messages
