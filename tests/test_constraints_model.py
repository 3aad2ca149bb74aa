"""JSON schemas, regexes and Lark grammars (llguidance) on the embedded default model, and the
CLI's answers to bad constraints: one line, exit 2, no hang."""

from __future__ import annotations

import json

import pytest

from decbench.constraints.build import build_constraint
from decbench.constraints.grammar import json_valid
from decbench.errors import ConfigError
from decbench.profiles import method_profile
from decbench.run import open_session
from decbench.settings import ConstraintSettings
from tests.test_cli import run_cli

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
PROMPT = "Extract name and age as JSON: Maria Lopez is a 34-year-old nurse from Madrid."


@pytest.fixture
def schema_file(tmp_path):
    path = tmp_path / "person.json"
    path.write_text(json.dumps(PERSON))
    return str(path)


def session(method: str, target=None, **constraint):
    overrides = [("generation", "max_new_tokens", 40)]
    overrides += [("constraint", key, value) for key, value in constraint.items()]
    return open_session(method_profile(method, overrides), target=target)


@pytest.mark.model
def test_json_schema_output_validates_and_pld_equals_greedy(default_session, schema_file):
    target = default_session.target
    greedy = session("greedy", target, kind="json-schema", schema=schema_file).generate(PROMPT)
    pld = session("pld", target, kind="json-schema", schema=schema_file).generate(PROMPT)
    assert json_valid(greedy.text, PERSON), greedy.text
    assert greedy.constraint["satisfied"] and greedy.finish_reason == "constraint"
    assert pld.token_ids == greedy.token_ids
    assert pld.constraint["drafted"] > 0
    assert 0 < greedy.constraint["mask_share"] < 0.5


@pytest.mark.model
def test_regex_and_lark_constraints(default_session):
    target = default_session.target
    regex = session("greedy", target, kind="grammar", regex=r"[0-9]{3}-[0-9]{4}")
    result = regex.generate("Make up a phone number.")
    assert result.constraint["satisfied"], result.text
    lark = 'start: "yes" | "no"'
    result = session("recycling", target, kind="grammar", lark=lark).generate("Is water wet?")
    assert result.text in {"yes", "no"} and result.constraint["satisfied"]


@pytest.mark.model
def test_text_allow_list_on_the_default_model(default_session, tmp_path):
    allow = tmp_path / "cities.txt"
    allow.write_text("Paris\nLondon\nNew York City\n")
    result = session("pld", default_session.target, kind="allow", file=str(allow)).generate(
        "Name the capital of France."
    )
    assert result.text in {"Paris", "London", "New York City"}
    assert result.constraint["satisfied"]


@pytest.mark.model
@pytest.mark.parametrize(
    "settings,message",
    [
        (ConstraintSettings(kind="json-schema", schema="SCHEMA_BAD_JSON"), "not valid JSON"),
        (
            ConstraintSettings(kind="json-schema", schema="SCHEMA_BAD_TYPE"),
            "not a valid JSON schema",
        ),
        (ConstraintSettings(kind="grammar", regex="[^\\s\\S]"), "regex"),
        (ConstraintSettings(kind="grammar", lark="start: ("), "constraint.lark"),
        (ConstraintSettings(kind="allow", file="EMPTY"), "empty"),
        (ConstraintSettings(kind="allow", schema="x.json"), "does not apply"),
    ],
)
def test_bad_constraints_are_one_line_config_errors(default_session, tmp_path, settings, message):
    files = {
        "SCHEMA_BAD_JSON": "{not json",
        "SCHEMA_BAD_TYPE": '{"type": "no-such-type"}',
        "EMPTY": "\n\n",
    }
    for key, text in files.items():
        path = tmp_path / key
        path.write_text(text)
        for field in ("schema", "file"):
            if getattr(settings, field) == key:
                setattr(settings, field, str(path))
    target = default_session.target
    with pytest.raises(ConfigError, match=message) as error:
        build_constraint(settings, target.tokenizer, target.vocab_size, target.eos_token_ids)
    assert "\n" not in str(error.value)


def test_methods_that_cannot_mask_refuse_before_loading(monkeypatch, capsys, tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps(PERSON))
    for method in ("hf-greedy", "contrastive", "llamacpp-greedy", "dllm-confidence"):
        code, out, err = run_cli(
            monkeypatch, capsys, "generate", "hi", "-m", method, "--json-schema", str(schema)
        )
        assert code == 2, err
        assert f"method '{method}' cannot honour a json-schema constraint" in err
        assert err.count("\n") == 1 and out == ""


@pytest.mark.model
def test_cli_bad_schema_exits_2_and_good_one_prints_json(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    code, out, err = run_cli(monkeypatch, capsys, "generate", "hi", "--json-schema", str(bad))
    assert code == 2 and "not valid JSON" in err and "Traceback" not in err
    good = tmp_path / "person.json"
    good.write_text(json.dumps(PERSON))
    code, out, err = run_cli(
        monkeypatch, capsys, "generate", PROMPT, "--json-schema", str(good), "-m", "pld", "--json"
    )
    assert code == 0, err
    record = json.loads(out)
    assert json_valid(record["text"], PERSON)
    assert record["constraint"]["satisfied"]
    code, _, err = run_cli(
        monkeypatch, capsys, "generate", "hi", "--regex", "a", "--allow", str(good)
    )
    assert code == 2 and "give one constraint flag" in err


@pytest.mark.model
@pytest.mark.parametrize("method", ["speculative", "medusa", "lookahead"])
def test_draft_model_and_tree_methods_equal_constrained_greedy(
    default_session, schema_file, method
):
    """A draft with draft probabilities (speculative) and tree drafts (medusa, lookahead's side
    branch) under a JSON schema: identical to constrained greedy, valid JSON."""
    target = default_session.target
    greedy = session("greedy", target, kind="json-schema", schema=schema_file).generate(PROMPT)
    result = session(method, target, kind="json-schema", schema=schema_file).generate(PROMPT)
    assert result.token_ids == greedy.token_ids
    assert json_valid(result.text, PERSON)


@pytest.mark.model
def test_json_extraction_suite_answers_validate_under_their_schemas(default_session):
    from decbench.compare.harness import Contender, run_sample
    from decbench.suites import get_suite

    profile = method_profile(
        "pld",
        [
            ("generation", "max_new_tokens", 64),
            ("constraint", "kind", "json-schema"),
            ("constraint", "schema", "sample"),
        ],
    )
    opened = open_session(profile, target=default_session.target, per_sample=True)
    contender = Contender("pld", profile, opened, {})
    for sample in get_suite("json-extraction").samples[:3]:
        record = run_sample(contender, sample, repeat=0)
        (text,) = record.turns
        assert json_valid(text, json.loads(sample.schema)), (sample.id, text)
        assert record.constraint[0]["satisfied"]


@pytest.mark.model
@pytest.mark.parametrize(
    "flag,value,message",
    [
        ("--allow", "EMPTY", "the allow-list is empty"),
        ("--regex", "[^\\s\\S]", "no token of the model's vocabulary can start"),
        ("--regex", "(unclosed", "unclosed group"),
        ("--json-schema", "MISSING", "cannot read JSON schema"),
    ],
)
def test_cli_bad_constraints_exit_2_on_one_line(
    monkeypatch, capsys, tmp_path, flag, value, message
):
    files = {"EMPTY": tmp_path / "empty.txt", "MISSING": tmp_path / "missing.json"}
    files["EMPTY"].write_text("\n\n")
    value = str(files.get(value, value))
    code, out, err = run_cli(monkeypatch, capsys, "generate", "hi", flag, value, "-n", "4")
    assert code == 2 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in err
