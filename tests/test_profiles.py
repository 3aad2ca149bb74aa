"""Profile loading: extends, overrides, and validation errors that name file, key and choices."""

from __future__ import annotations

from pathlib import Path

import pytest

from decbench.errors import ConfigError
from decbench.profiles import builtin_dir, load_profile, method_profile, parse_override


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_builtin_profile_validates():
    paths = sorted(builtin_dir().glob("*.toml"))
    assert paths
    for path in paths:
        profile = load_profile(str(path))
        assert profile.method


def test_extends_merges_table_by_table(tmp_path):
    write(
        tmp_path, "base.toml", '[method]\nname = "pld"\nk = 5\n[generation]\nmax_new_tokens = 9\n'
    )
    child = write(tmp_path, "child.toml", 'extends = "base.toml"\n[method]\nmax_ngram = 2\n')
    profile = load_profile(str(child))
    assert (profile.method, profile.options.k, profile.options.max_ngram) == ("pld", 5, 2)
    assert profile.generation.max_new_tokens == 9


def test_extends_with_another_method_drops_parent_options(tmp_path):
    write(tmp_path, "base.toml", '[method]\nname = "pld"\nk = 5\n')
    child = write(tmp_path, "child.toml", 'extends = "base.toml"\n[method]\nname = "greedy"\n')
    assert load_profile(str(child)).method == "greedy"


def test_extends_cycle_is_an_error(tmp_path):
    write(tmp_path, "a.toml", 'extends = "b.toml"\n[method]\nname = "greedy"\n')
    write(tmp_path, "b.toml", 'extends = "a.toml"\n')
    with pytest.raises(ConfigError, match="cycle"):
        load_profile(str(tmp_path / "a.toml"))


def test_overrides_win_and_are_typed():
    profile = method_profile(
        "pld", [parse_override("method.k=3"), parse_override("sampling.top_p=0.5")]
    )
    assert profile.options.k == 3
    assert profile.sampling.top_p == 0.5
    assert parse_override('generation.stop=["\\n\\n"]') == ("generation", "stop", ["\n\n"])
    assert parse_override("model.name=some/folder") == ("model", "name", "some/folder")


@pytest.mark.parametrize(
    "text,message",
    [
        (
            '[method]\nname = "greedy"\n[backend]\ndevise = "cpu"\n',
            "unknown key 'devise'; did you mean 'device'?",
        ),
        (
            '[method]\nname = "greedy"\n[sampler]\n',
            "unknown table or key 'sampler'; did you mean 'sampling'?",
        ),
        (
            '[method]\nname = "greedy"\n[generation]\nmax_new_tokens = "ten"\n',
            "expected an integer, got str 'ten'",
        ),
        ('[method]\nname = "greedy"\n[generation]\nchat = 1\n', "expected true or false"),
        ('[method]\nname = "pld"\nk = 2.5\n', "k: expected an integer"),
        ('[method]\nname = "greedy"\nk = 2\n', "unknown key 'k'"),
        ("[method]\n", "needs a 'name'"),
        ('[method]\nname = "speculatve"\n', "did you mean 'speculative'?"),
        ('[generation]\nstop = "x"\n[method]\nname = "greedy"\n', "expected a list of str"),
    ],
)
def test_validation_errors_name_file_key_and_choices(tmp_path, text, message):
    path = write(tmp_path, "p.toml", text)
    with pytest.raises(ConfigError) as info:
        load_profile(str(path))
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_floats_accept_integers():
    assert method_profile("sample", [("sampling", "temperature", 1)]).sampling.temperature == 1.0


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match=r"TABLE\.KEY=VALUE"):
        parse_override("k=3")
