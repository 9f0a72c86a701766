"""YAML that remembers lines: what the owner's files are read as, and where a problem is reported."""

from __future__ import annotations

from pathlib import Path

from supportd.base.errors import Problem
from supportd.base.yamlfile import Section, YList, YMap, load_yaml, parse_clock_time


def load(tmp_path: Path, text: str) -> tuple[object, list[Problem]]:
    path = tmp_path / "file.yaml"
    path.write_text(text, encoding="utf-8")
    problems: list[Problem] = []
    return load_yaml(path, "file.yaml", problems), problems


def test_every_key_and_item_knows_its_line(tmp_path: Path) -> None:
    """Mappings and lists carry the line of each key and item, for 'file:line' reports."""
    data, problems = load(tmp_path, "# a comment\nintent: gift\nrules:\n  - name: a\n\n  - name: b\n")
    assert problems == []
    assert isinstance(data, YMap) and data.line_of("intent") == 2 and data.line_of("rules") == 3
    rules = data["rules"]
    assert isinstance(rules, YList) and [rules.line_of(0), rules.line_of(1)] == [4, 6]


def test_yes_and_no_stay_words(tmp_path: Path) -> None:
    """An owner's word list [yes, no, on, off] stays words; only true/false are booleans."""
    data, _ = load(tmp_path, "affirmations: [yes, no, on, off, Yes]\nirreversible: true\n")
    assert isinstance(data, YMap)
    assert data["affirmations"] == ["yes", "no", "on", "off", "Yes"] and data["irreversible"] is True


def test_a_key_given_twice_is_reported_at_the_second(tmp_path: Path) -> None:
    """PyYAML keeps the last of two equal keys silently; supportd names the line of the repeat."""
    _, problems = load(tmp_path, "intent: gift\npriority: 1\npriority: 2\n")
    assert [str(p) for p in problems] == ["file.yaml:3: 'priority' is given twice; keep one"]


def test_an_unclosed_bracket_is_reported_where_it_was_opened(tmp_path: Path) -> None:
    """The parser notices a missing ']' lines later; the report points at the '['."""
    data, problems = load(tmp_path, "intent: gift\nwords: [a, b,\n  c\nreply: other\n")
    assert data is None
    assert len(problems) == 1 and problems[0].line == 2 and "not closed with ']'" in problems[0].message


def test_an_unclosed_quote_at_the_end_is_reported_where_it_was_opened(tmp_path: Path) -> None:
    """A quote left open runs to the end of the file; the report points at the quote."""
    _, problems = load(tmp_path, "intent: gift\nreply: 'other\n\n\n")
    assert [p.line for p in problems] == [2] and "quote" in problems[0].message


def test_a_tab_is_reported_at_its_line(tmp_path: Path) -> None:
    """A tab used for indentation is reported at its own line."""
    _, problems = load(tmp_path, "intent: gift\nrules:\n\t- name: a\n")
    assert [p.line for p in problems] == [3] and "YAML syntax" in problems[0].message


def test_an_unknown_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    """A misspelt key is reported at its line with the closest known key."""
    data, _ = load(tmp_path, "host: mail.example\nprot: 993\n")
    problems: list[Problem] = []
    section = Section(data, "file.yaml", problems, "imap")
    section.take("host", str)
    section.take("port", int, 993)
    section.finish()
    assert [str(p) for p in problems] == ["file.yaml:2: unknown key 'imap.prot' (did you mean 'port'?)"]


def test_a_wrong_type_names_what_was_expected(tmp_path: Path) -> None:
    """'port: high' is reported as 'must be a whole number, not text', and the default is used."""
    data, _ = load(tmp_path, "port: high\n")
    problems: list[Problem] = []
    assert Section(data, "file.yaml", problems, "imap").take("port", int, 993) == 993
    assert [str(p) for p in problems] == ["file.yaml:1: imap.port must be a whole number, not text"]


def test_clock_times_must_be_quoted_text() -> None:
    """'08:30' is half past eight; the number YAML 1.1 makes of an unquoted 08:30 is refused."""
    assert parse_clock_time("08:30") == (8, 30)
    assert parse_clock_time(510) is None and parse_clock_time("24:00") is None
