"""YAML that remembers where each value came from, and a reader that checks it.

PyYAML forgets line numbers once a document is built; the owner needs them ("rules/20-defect.yaml:14:
unknown key 'txt'"). This loader builds ordinary dicts and lists that also carry the line of every
key and item, and reports duplicate keys, which PyYAML silently collapses.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supportd.base.errors import Problem

if TYPE_CHECKING:
    import yaml


class YMap(dict[str, Any]):
    """A YAML mapping with the line of the mapping and of each key."""

    line: int
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class YList(list[Any]):
    """A YAML sequence with the line of the sequence and of each item."""

    line: int
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


def _construct_map(loader: Any, node: yaml.MappingNode) -> YMap:
    result = YMap()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        key_text = str(key)
        line = key_node.start_mark.line + 1
        if key_text in result:
            loader.duplicate_keys.append((key_text, line))
        result[key_text] = loader.construct_object(value_node, deep=True)
        result.key_lines[key_text] = line
    return result


def _construct_seq(loader: Any, node: yaml.SequenceNode) -> YList:
    result = YList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


@functools.cache
def _loader() -> Any:
    """PyYAML's safe loader with the constructors above and our resolvers.

    Made at the first load, not at import: a read-ahead process imports the rules' modules to use
    rules already loaded, and never needs PyYAML (15 ms of its start).
    """
    import yaml

    class _Loader(yaml.SafeLoader):
        duplicate_keys: list[tuple[str, int]]

    _Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
    _Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)

    # YAML 1.2 booleans only: YAML 1.1 also reads yes/no/on/off as true/false, so a word list like
    # [yes, no] would silently become [True, False]. Owners write words; only true/false are booleans.
    # Dates stay text too: PyYAML turns 2026-12-24 into a date but crashes on 2026-13-40, where the
    # owner deserves "file:line: not a date"; the config reads dates itself. And no base-60 numbers:
    # YAML 1.1 reads an unquoted 17:00 as 1020, so "close: 17:00" would fail.
    dropped_tags = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:int",
                    "tag:yaml.org,2002:float")
    _Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in dropped_tags]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789")
    )
    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)?\.[0-9_]+(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
        list("-+0123456789."),
    )
    return _Loader


def load_yaml(path: Path, shown_as: str, problems: list[Problem]) -> Any:
    """Load one YAML file; syntax errors and duplicate keys become problems, never exceptions."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(shown_as, 1, f"cannot read the file: {exc}"))
        return None
    import yaml

    loader = _loader()(text)
    loader.duplicate_keys = []
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        line, message = _syntax_problem(exc, text)
        problems.append(Problem(shown_as, line, f"YAML syntax: {message}"))
        return None
    except yaml.YAMLError as exc:
        problems.append(Problem(shown_as, 1, f"YAML syntax: {exc}"))
        return None
    finally:
        loader.dispose()
    for key, line in loader.duplicate_keys:
        problems.append(Problem(shown_as, line, f"'{key}' is given twice; keep one"))
    return data


_OPENED = {"flow sequence": "the '[' list opened on this line is not closed with ']'",
           "flow mapping": "the '{' opened on this line is not closed with '}'",
           "quoted scalar": "the quote opened on this line is not closed"}


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str) -> tuple[int, str]:
    """The line to show and what to say.

    The parser notices an unclosed bracket or quote only where something else begins (often the
    next line, or the end of the file); the owner needs the line where it was opened.
    """
    problem, context = exc.problem_mark, exc.context_mark
    detail = f"{exc.problem or 'not valid YAML'}{' ' + exc.context if exc.context else ''}"
    opened = next((text for construct, text in _OPENED.items() if construct in (exc.context or "")), None)
    at_end = problem is not None and problem.index >= len(text.rstrip())
    if context is not None and (opened or at_end or problem is None):
        noticed = "at the end of the file" if at_end else f"at line {problem.line + 1}" if problem else ""
        if opened:
            return context.line + 1, f"{opened} (the parser stopped {noticed}: {detail})"
        return context.line + 1, f"{detail} (noticed {noticed}; check indentation, quotes and brackets)"
    mark = problem or context
    return (mark.line + 1 if mark else 1), f"{detail} (check indentation, quotes and brackets)"


TYPE_NAMES = {
    str: "text",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    YMap: "a mapping (key: value lines)",
    YList: "a list",
}


class Section:
    """Reads the keys of one YAML mapping, checking each, and reports what is unknown or wrong.

    Every ``take`` records the key as known; ``finish`` reports the keys nobody asked for, with the
    closest known name as a hint ("unknown key 'hots' (did you mean 'host'?)").
    """

    def __init__(self, data: Any, file: str, problems: list[Problem], where: str, line: int = 1):
        self.file = file
        self.problems = problems
        self.where = where
        if isinstance(data, YMap):
            self.data: YMap = data
        else:
            self.data = YMap()
            self.data.line = line
            self.data.key_lines = {}
            if data is not None:
                self.error(line, f"{where} must be a mapping of 'key: value' lines")
        self.known: list[str] = []

    @property
    def line(self) -> int:
        return self.data.line

    def error(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))

    def line_of(self, key: str) -> int:
        return self.data.line_of(key)

    def has(self, key: str) -> bool:
        return key in self.data

    def take(self, key: str, kind: type, default: Any = None, required: bool = False) -> Any:
        """The value of ``key`` if it has type ``kind``; else report it and return ``default``."""
        self.known.append(key)
        if key not in self.data or self.data[key] is None:
            if required:
                self.error(self.line, f"'{self.label(key)}' is missing; add '{key}:' here")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            got = TYPE_NAMES.get(type(value), type(value).__name__)
            self.error(
                self.line_of(key),
                f"{self.label(key)} must be {TYPE_NAMES.get(kind, kind.__name__)}, not {got}",
            )
            return default
        return value

    def take_choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.take(key, str, default)
        if value not in choices:
            self.error(
                self.line_of(key),
                f"{self.label(key)} is '{value}'; choose one of: {', '.join(choices)}",
            )
            return default
        return str(value)

    def take_strings(self, key: str, default: list[str] | None = None) -> list[str]:
        """A list of texts; a single text is accepted as a list of one."""
        self.known.append(key)
        value = self.data.get(key)
        if value is None:
            return list(default or [])
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return [str(value)]
        if not isinstance(value, YList):
            self.error(self.line_of(key), f"{self.label(key)} must be a list of texts")
            return list(default or [])
        result = []
        for index, item in enumerate(value):
            if isinstance(item, (str, int, float)) and not isinstance(item, bool):
                result.append(str(item))
            else:
                self.error(value.line_of(index), f"{self.label(key)} item {index + 1} must be text")
        return result

    def take_section(self, key: str) -> Section:
        self.known.append(key)
        return Section(self.data.get(key), self.file, self.problems, self.label(key), self.line_of(key))

    def label(self, key: str) -> str:
        """How a key is named in messages: 'imap.port', or just 'port' at the top of a file."""
        return f"{self.where}.{key}" if self.where else key

    def finish(self) -> None:
        for key in self.data:
            if key not in self.known:
                hint = difflib.get_close_matches(key, self.known, n=1)
                tip = f" (did you mean '{hint[0]}'?)" if hint else f"; known keys: {', '.join(self.known)}"
                self.error(self.line_of(key), f"unknown key '{self.label(key)}'{tip}")


_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_clock_time(value: Any) -> tuple[int, int] | None:
    """'08:30' -> (8, 30). YAML 1.1 reads an unquoted 08:30 as the number 510, so that is refused."""
    if isinstance(value, str):
        match = _TIME.match(value.strip())
        if match:
            return int(match.group(1)), int(match.group(2))
    return None


def walk_files(folder: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    """The files of a folder with the given suffixes, in name order (the order the owner sees)."""
    if not folder.is_dir():
        return iter(())
    return iter(sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in suffixes))


def modification_times(files: Iterable[tuple[str, Path]]) -> dict[str, float]:
    """Name -> modification time of each file still there: the owner's files, to notice an edit without a
    SIGHUP."""
    stamps = {}
    for name, path in files:
        try:
            stamps[name] = path.stat().st_mtime
        except FileNotFoundError:
            continue
    return stamps


def shown_path(path: Path, base: Path | None = None) -> str:
    """A path as the owner should see it in an error: relative to ``base`` where possible."""
    if base is not None:
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            pass
    return str(path)


Checker = Callable[[Section], None]
