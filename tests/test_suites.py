"""Prompt suites: every built-in suite builds from text written here or shipped with Python,
both JSONL formats load (multi-turn included), and bad lines give one error naming file and
line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from decbench.cli.app import app
from decbench.errors import ConfigError
from decbench.suites import CATEGORIES, DEFAULT_SUITE, Sample, get_suite, list_suites
from decbench.suites.stdlib import excerpt, function_source


def write_lines(path, *lines: str):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_builtin_suites_cover_every_category_with_short_prompts():
    everything = get_suite("all")
    assert everything.categories == list(CATEGORIES)
    for category in CATEGORIES:
        samples = [s for s in everything.samples if s.category == category]
        assert len(samples) == 8, category
        assert len({s.id for s in samples}) == 8
    for sample in everything.samples:
        for turn in sample.turns:
            assert turn.strip()
            assert len(turn) < 2200, (sample.id, len(turn))  # a few hundred tokens at most
    multi = [s for s in everything.samples if s.category == "multi-turn"]
    assert all(len(s.turns) == 2 for s in multi)


def test_named_suites_and_default():
    names = {s.name for s in list_suites()}
    assert {DEFAULT_SUITE, "all", "summarization", "qa", "code-edit", "input-grounded"} <= names
    mini = get_suite(DEFAULT_SUITE)
    assert mini.categories == list(CATEGORIES)
    assert len(mini.samples) == 3 * len(CATEGORIES)
    assert get_suite("input-grounded").categories == ["summarization", "rag", "code-edit"]


def test_stdlib_prompts_come_from_pythons_own_text():
    summary = get_suite("summarization").samples[0].turns[0]
    assert 'The "assert" statement' in summary
    edit = get_suite("code-edit").samples[0].turns[0]
    assert "def rgb_to_hls(r, g, b):" in edit
    # docstrings are dropped to keep prompts short; code and comments stay
    assert '"""' not in function_source("colorsys", "rgb_to_hls")
    # C-accelerated modules still give their pure-Python source
    assert function_source("bisect", "insort_right").startswith("def insort_right(")
    # methods are dedented
    assert function_source("random", "choices").startswith("def choices(self")


def test_excerpt_keeps_whole_paragraphs():
    text = "aaaa\n\nbbbb\n\ncccc"
    assert excerpt(text, 10) == "aaaa\n\nbbbb"
    assert excerpt(text, 3) == "aaaa"  # at least one paragraph


def test_select_by_category_and_limit():
    suite = get_suite("all").select(["qa", "math"], limit=2)
    assert [s.id for s in suite.samples] == ["qa-01", "qa-02", "math-01", "math-02"]
    assert suite.checksum() != get_suite("all").checksum()
    with pytest.raises(ConfigError, match="unknown category 'maths'; did you mean 'math'"):
        get_suite("all").select(["maths"])
    with pytest.raises(ConfigError, match="--limit must be >= 1"):
        get_suite("qa").select(limit=0)


def test_unknown_suite_suggests_a_name():
    with pytest.raises(ConfigError, match="did you mean 'summarization'"):
        get_suite("sumarization")
    with pytest.raises(ConfigError, match="neither a built-in suite nor a file"):
        get_suite("no/such/file.jsonl")


def test_decbench_format(tmp_path):
    path = write_lines(
        tmp_path / "mine.jsonl",
        json.dumps({"id": "colors", "category": "qa", "prompt": "Name three colors."}),
        "",
        json.dumps({"category": "chat", "turns": ["Write a haiku.", "Make it sadder."]}),
        json.dumps({"prompt": "2 + 2?", "reference": "4", "meta": {"source": "me"}}),
    )
    suite = get_suite(str(path))
    assert suite.name == "mine"
    assert [s.id for s in suite.samples] == ["colors", "3", "4"]  # default id: the line number
    assert suite.samples[1].turns == ("Write a haiku.", "Make it sadder.")
    assert suite.samples[2].category == "default"
    assert suite.samples[2].reference == ("4",)
    assert suite.categories == ["qa", "chat", "default"]


def test_spec_bench_format_with_multi_turn_questions(tmp_path):
    path = write_lines(
        tmp_path / "question.jsonl",
        json.dumps(
            {
                "question_id": 81,
                "category": "writing",
                "turns": [
                    "Compose a travel blog post.",
                    "Rewrite it starting every sentence with A.",
                ],
            }
        ),
        json.dumps(
            {
                "question_id": 111,
                "category": "math",
                "turns": ["What is 3 + 4?", "And times 2?"],
                "reference": ["7", "14"],
                "extra_upstream_key": True,
            }
        ),
        json.dumps({"question_id": "t-1", "category": "translation", "turns": ["Translate: hi"]}),
    )
    suite = get_suite(str(path))
    assert [s.id for s in suite.samples] == ["81", "111", "t-1"]
    assert [len(s.turns) for s in suite.samples] == [2, 2, 1]
    assert suite.samples[1].reference == ("7", "14")
    assert suite.select(["math"]).samples[0].id == "111"


SPEC_BENCH_FIXTURE = Path(__file__).parent / "data" / "spec_bench_question.jsonl"


def test_every_row_shape_of_spec_bench_question_file_loads():
    """The fixture has each row shape of Spec-Bench's question.jsonl (written for decbench from
    the format, not copied): two-turn MT-bench rows with a reference per turn, with a single
    reference and with none; single-turn rows with a list-of-strings reference; QA rows with no
    reference; RAG rows whose reference is a list holding a list of acceptable answers; and a
    key decbench does not know."""
    raw = [json.loads(line) for line in SPEC_BENCH_FIXTURE.read_text().splitlines()]
    suite = get_suite(str(SPEC_BENCH_FIXTURE))
    assert [s.id for s in suite.samples] == [str(r["question_id"]) for r in raw]
    assert [s.turns for s in suite.samples] == [tuple(r["turns"]) for r in raw]
    assert suite.categories == list(dict.fromkeys(r["category"] for r in raw))
    by_id = {s.id: s for s in suite.samples}
    assert by_id["81"].reference is None  # MT-bench without a reference
    assert by_id["321"].reference is None  # QA: never a reference
    assert by_id["111"].reference == ("36", "40")  # one per turn
    assert by_id["131"].reference == ("3, 7, 9",)  # one for two turns
    assert by_id["482"].reference == (("James Ray", "George Harrison"),)  # RAG: nested
    # the stored form round-trips (run.json keeps the samples) and keeps the nesting
    for sample in suite.samples:
        data = json.loads(json.dumps(sample.to_dict()))
        assert Sample.from_dict(data) == sample
        assert data["reference"] == raw[suite.samples.index(sample)].get("reference")
    rag = suite.select(["rag"], limit=2)
    assert [s.id for s in rag.samples] == ["481", "482"]


def test_references_of_the_wrong_shape_are_refused(tmp_path):
    for bad in ([["ok", 3]], [[["too deep"]]], {"a": "b"}, [4]):
        path = write_lines(
            tmp_path / "q.jsonl",
            json.dumps({"question_id": 1, "category": "rag", "turns": ["hi"], "reference": bad}),
        )
        with pytest.raises(ConfigError, match=r"q\.jsonl:1: 'reference' must be a string or a"):
            get_suite(str(path))


BAD_LINES = [
    ('{"prompt": "ok"}\n{"prompt": "cut', r"bad\.jsonl:2: not valid JSON"),
    ('{"prompt": "ok"}\n["a", "b"]', r"bad\.jsonl:2: expected a JSON object, got list"),
    ('{"prompt": "a", "turns": ["b"]}', r"bad\.jsonl:1: give exactly one of 'prompt'"),
    ('{"category": "qa"}', r"bad\.jsonl:1: give exactly one of"),
    ('{"promt": "hi"}', r"bad\.jsonl:1: unknown key 'promt'; did you mean 'prompt'"),
    ('{"turns": []}', r"bad\.jsonl:1: 'turns' must be a non-empty list"),
    ('{"turns": ["ok", 3]}', r"bad\.jsonl:1: 'turns\[1\]' must be a non-empty string"),
    ('{"prompt": "   "}', r"bad\.jsonl:1: 'prompt' must be a non-empty string"),
    ('{"question_id": 1, "turns": ["hi"]}', r"bad\.jsonl:1: Spec-Bench question needs 'category'"),
    ('{"question_id": 1, "category": "x", "turns": "hi"}', r"bad\.jsonl:1: 'turns' must be"),
    ('{"id": 1, "prompt": "a"}\n\n{"id": "1", "prompt": "b"}', r"bad\.jsonl:3: duplicate id '1'"),
    ('{"prompt": "a", "reference": 4}', r"bad\.jsonl:1: 'reference' must be a string or a list"),
    ("\n\n", r"bad\.jsonl: the suite file has no samples"),
]


@pytest.mark.parametrize("text,message", BAD_LINES, ids=[m for _, m in BAD_LINES])
def test_malformed_lines_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        get_suite(str(path))


def test_forced_format(tmp_path):
    path = write_lines(tmp_path / "q.jsonl", json.dumps({"id": "a", "prompt": "hi"}))
    with pytest.raises(ConfigError, match="Spec-Bench question needs 'question_id'"):
        get_suite(str(path), "spec-bench")
    with pytest.raises(ConfigError, match="unknown suite format 'mtbench'"):
        get_suite(str(path), "mtbench")


def test_not_utf8(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        get_suite(str(path))


@pytest.mark.parametrize(
    "args", [["suites", "--help"], ["suites", "list", "--help"], ["suites", "show", "--help"]]
)
def test_suites_help(args):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_suites_cli_list_and_show(tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["suites", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.output)
    assert data["schema"] == "decbench/suites/v1"
    assert {s["name"] for s in data["suites"]} >= {"summarization", "code-edit", DEFAULT_SUITE}
    shown = runner.invoke(app, ["suites", "show", "code-edit", "--limit", "1", "--json"])
    sample = json.loads(shown.output)["samples"]
    assert [s["id"] for s in sample] == ["code-edit-01"]
    path = write_lines(
        tmp_path / "q.jsonl", json.dumps({"question_id": 1, "category": "c", "turns": ["a", "b"]})
    )
    human = runner.invoke(app, ["suites", "show", str(path)])
    assert human.exit_code == 0
    assert "1. a" in human.output and "2. b" in human.output
