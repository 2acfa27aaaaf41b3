"""Mapping documents: validation names the entry and the line of each problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.mapping import (
    Mapping,
    MappingEntry,
    MappingError,
    compile_mapping,
    compile_stored,
    load_mapping_file,
    parse_mapping,
)

pytestmark = pytest.mark.unit

GOOD_YAML = """\
# a comment
- source: phone_number
  target: phone
  transform: e164
- source: email
  target: email
- source: field_data[name=full_name].values.0
  target: name
  transform: split_name
- target: custom.lead_source
  transform: constant
  value: web
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(tmp_path: Path, name: str, text: str) -> list[str]:
    with pytest.raises(MappingError) as info:
        load_mapping_file(write(tmp_path, name, text))
    return info.value.problems


def test_good_yaml(tmp_path: Path) -> None:
    mapping = load_mapping_file(write(tmp_path, "m.yaml", GOOD_YAML))
    assert len(mapping.entries) == 4
    assert mapping.entries[0] == MappingEntry(
        source="phone_number", target="phone", transform="e164"
    )
    assert mapping.keep_unmapped is True
    compile_mapping(mapping)


def test_good_json_object_form(tmp_path: Path) -> None:
    text = '{"entries": [{"source": "email", "target": "email"}], "keep_unmapped": false}'
    mapping = load_mapping_file(write(tmp_path, "m.json", text))
    assert mapping == Mapping(
        entries=(MappingEntry(source="email", target="email"),), keep_unmapped=False
    )


def test_unknown_transform_names_entry_and_line(tmp_path: Path) -> None:
    text = GOOD_YAML.replace("transform: e164", "transform: titlecase")
    [problem] = problems(tmp_path, "m.yml", text)
    assert problem.startswith("entry 1 (line 2):")
    assert "unknown transform 'titlecase'" in problem
    assert "split_name" in problem  # lists the valid ones


def test_unknown_target_names_entry_and_line(tmp_path: Path) -> None:
    text = GOOD_YAML.replace("target: email", "target: emial")
    [problem] = problems(tmp_path, "m.yaml", text)
    assert problem.startswith("entry 2 (line 5):")
    assert "unknown target 'emial'" in problem


@pytest.mark.parametrize(
    "source",
    ["a..b", ".a", "a.", "a[name=x", "a]b", "a[]", "a[=x]"],
)
def test_bad_paths_are_rejected(tmp_path: Path, source: str) -> None:
    text = f'[{{"source": "email", "target": "email"}},\n {{"source": "{source}", "target": "custom.x"}}]'
    [problem] = problems(tmp_path, "m.json", text)
    assert problem.startswith("entry 2 (line 2):")
    assert "bad source path" in problem


def test_every_problem_is_reported(tmp_path: Path) -> None:
    text = """\
- source: a
  target: nowhere
- source: b
  target: email
  transform: sparkle
- target: custom.c
  transform: constant
- source: d
  target: custom.d
  tranform: lowercase
- just a string
"""
    found = problems(tmp_path, "m.yaml", text)
    assert [p.split(":")[0] for p in found] == [
        "entry 1 (line 1)",
        "entry 2 (line 3)",
        "entry 3 (line 6)",
        "entry 4 (line 8)",
        "entry 5 (line 11)",
    ]
    assert "needs a value" in found[2]
    assert "'tranform'" in found[3]


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "m.yaml", "- source: a\n  target: [email\n")
    assert "not valid YAML" in problem
    assert "line" in problem


def test_json_syntax_error(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "m.json", '[{"source": "a",}]')
    assert "not valid JSON" in problem


def test_wrong_suffix_and_missing_file(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "m.txt", "[]")
    assert ".json, .yaml or .yml" in problem
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping_file(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        (
            {"source": "a", "target": "custom.x", "transform": "constant", "value": 1},
            "takes no source",
        ),
        ({"target": "email"}, "needs a source"),
        ({"source": "a", "target": "email", "value": "x"}, "only used by constant and default"),
        (
            {"source": "a", "target": "custom.x", "transform": "default", "value": {"a": 1}},
            "text, a number",
        ),
        ({"source": "a", "target": "custom.x", "format": "%Y"}, "only used by date and e164"),
        ({"source": "a", "target": "custom.x", "transform": "date", "format": "YYYY"}, "strptime"),
        ({"source": "a", "target": "phone", "transform": "e164", "format": "XX"}, "region code"),
        ({"source": "a", "target": "custom.x", "transform": "split_name"}, "split_name writes"),
        ({"source": "a", "target": "custom."}, "bad custom target"),
        ({"source": "a", "target": "custom.has space"}, "bad custom target"),
        ({"source": 5, "target": "email"}, "source must be text"),
        ({"source": "a"}, "target is required"),
    ],
)
def test_entry_rules(entry: dict[str, object], fragment: str) -> None:
    with pytest.raises(MappingError) as info:
        parse_mapping([entry])
    assert any(fragment in p for p in info.value.problems), info.value.problems
    assert info.value.problems[0].startswith("entry 1:")


def test_top_level_shapes() -> None:
    assert parse_mapping([]).entries == ()
    assert parse_mapping(None).entries == ()
    with pytest.raises(MappingError, match="list of entries"):
        parse_mapping("email")
    with pytest.raises(MappingError, match="unknown top-level"):
        parse_mapping({"entrys": []})
    with pytest.raises(MappingError, match="keep_unmapped"):
        parse_mapping({"entries": [], "keep_unmapped": "yes"})
    with pytest.raises(MappingError, match="at most 500"):
        parse_mapping([{"source": "a", "target": "email"}] * 501)


def test_stored_form_round_trips() -> None:
    mapping = parse_mapping(
        [
            {"source": "e", "target": "email"},
            {"source": "p", "target": "phone", "transform": "e164"},
        ]
    )
    stored = mapping.to_stored()
    assert stored == [
        {"source": "e", "target": "email", "transform": "direct"},
        {"source": "p", "target": "phone", "transform": "e164"},
    ]
    assert compile_stored(stored).mapping == mapping
    dropped = Mapping(entries=mapping.entries, keep_unmapped=False)
    assert compile_stored(dropped.to_stored()).mapping == dropped
    assert compile_stored([]).entries == ()


def test_compile_rejects_an_invalid_model() -> None:
    bad = Mapping(entries=(MappingEntry(source="a", target="nowhere"),))
    with pytest.raises(MappingError, match="entry 1: unknown target"):
        compile_mapping(bad)
