"""How docs/constraints.md chose llguidance: llguidance, xgrammar and outlines-core on the CPU,
with the default model's tokenizer (49,152 tokens): tokenizer set-up, schema compile time, and
mask time per step (mean over the tokens of a valid answer, median of 5 passes), two schemas.

Needs the two libraries decbench does not depend on:
    pip install --no-deps "xgrammar==0.2.9" apache-tvm-ffi
    pip install "outlines-core==0.2.14"
    python bench/constraint_libs.py
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import AutoTokenizer

from decbench.models import resolve

SMALL = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
SMALL_ANSWER = '{"name": "Maria Lopez", "age": 34}'
VISIT = {
    "type": "object",
    "properties": {"date": {"type": "string"}, "doctor": {"type": "string"}},
    "required": ["date", "doctor"],
}
NESTED = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "temperature": {"type": "number"},
        "symptoms": {"type": "array", "items": {"type": "string"}},
        "visits": {"type": "array", "items": VISIT},
    },
    "required": ["name", "temperature", "symptoms", "visits"],
    "additionalProperties": False,
}
NESTED_ANSWER = (
    '{"name": "John Carter", "temperature": 38.5, "symptoms": ["fever", "sore throat", '
    '"mild headache"], "visits": [{"date": "2026-03-02", "doctor": "Dr. Evans"}, '
    '{"date": "2026-03-09", "doctor": "Dr. Khan"}]}'
)
SEPARATORS = (", ", ": ")

Masker = Callable[[Any], tuple[Callable[[], None], Callable[[int], None]]]


def measure(name: str, tok: Any, wrap: Callable[[], Any], build: Callable, masker: Masker) -> None:
    start = time.perf_counter()
    wrapped = wrap()
    setup = time.perf_counter() - start
    for label, schema, answer in (
        ("small", SMALL, SMALL_ANSWER),
        ("nested", NESTED, NESTED_ANSWER),
    ):
        ids = tok.encode(answer, add_special_tokens=False)
        start = time.perf_counter()
        compiled = build(wrapped, schema)
        compile_s = time.perf_counter() - start
        passes = []
        for _ in range(5):
            fill, consume = masker(compiled)
            steps = []
            for token in ids:
                start = time.perf_counter()
                fill()
                steps.append(time.perf_counter() - start)
                consume(token)
            passes.append(statistics.mean(steps))
        print(
            f"{name:14s} tokenizer {setup * 1000:5.0f} ms · {label} schema ({len(ids)} tokens): "
            f"compile {compile_s * 1000:6.1f} ms, mask {statistics.median(passes) * 1000:.3f} ms/step"
        )


def llguidance_lib(tok: Any, vocab: int) -> None:
    import llguidance
    import llguidance.hf
    import llguidance.torch as lt

    options = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

    def build(lltok, schema):
        return lltok, llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=options)

    def masker(compiled):
        matcher = llguidance.LLMatcher(*compiled)
        bitmask = lt.allocate_token_bitmask(1, vocab)
        return (lambda: lt.fill_next_token_bitmask(matcher, bitmask)), matcher.consume_token

    wrap = lambda: llguidance.hf.from_tokenizer(tok, n_vocab=vocab)  # noqa: E731
    measure("llguidance", tok, wrap, build, masker)


def xgrammar_lib(tok: Any, vocab: int) -> None:
    import xgrammar as xgr

    def wrap():
        info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=vocab)
        return xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)

    def build(compiler, schema):
        text = json.dumps(schema)
        return compiler.compile_json_schema(text, any_whitespace=False, separators=SEPARATORS)

    def masker(compiled):
        matcher = xgr.GrammarMatcher(compiled)
        bitmask = xgr.allocate_token_bitmask(1, vocab)
        return (lambda: matcher.fill_next_token_bitmask(bitmask)), matcher.accept_token

    measure("xgrammar", tok, wrap, build, masker)


def outlines_lib(tok: Any, vocab: int) -> None:
    import outlines_core as oc
    from outlines_core.json_schema import build_regex_from_schema
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    def wrap():  # Vocabulary.from_pretrained needs the Hub: rebuild the byte vocabulary
        byte_of = {char: byte for byte, char in bytes_to_unicode().items()}
        tokens: dict[bytes, list[int]] = {}
        for text, token in tok.get_vocab().items():
            if token == tok.eos_token_id:
                continue
            try:
                raw = bytes(byte_of[c] for c in text)
            except KeyError:
                raw = text.encode()
            tokens.setdefault(raw, []).append(token)
        return oc.Vocabulary(tok.eos_token_id, tokens)

    def build(vocabulary, schema):
        return oc.Index(build_regex_from_schema(json.dumps(schema), r"[ ]?"), vocabulary)

    def masker(index):
        guide = oc.Guide(index)
        words = torch.zeros((1, (vocab + 31) // 32), dtype=torch.int32)
        fill = lambda: guide.write_mask_into(words.data_ptr(), words.numel(), 4)  # noqa: E731
        return fill, guide.advance

    measure("outlines-core", tok, wrap, build, masker)


def main() -> None:
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(resolve("smollm2-135m"))
    vocab = len(tok)
    for lib in (llguidance_lib, xgrammar_lib, outlines_lib):
        lib(tok, vocab)


if __name__ == "__main__":
    main()
