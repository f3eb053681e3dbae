"""The README's shell blocks as a new user runs them: every ``detection-pipeline`` command, and the marked walk-through.

A block is a fenced ``bash`` or ``console`` block; lines are joined at ``\\``, comments and ``$ ``
prompts stripped, ``NAME=value`` assignments remembered (as one shell session would, across
blocks) and ``$NAME`` words expanded. The walk-through is the block after the
``<!-- readme-test: walkthrough -->`` marker.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from include.project import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
WALKTHROUGH_MARKER = "<!-- readme-test: walkthrough -->"
_FENCE = re.compile(r"^```(\w*)\s*$")
_ASSIGNMENT = re.compile(r"^([A-Z_][A-Z0-9_]*)=(\S+)$")


@dataclass(frozen=True)
class Command:
    """One ``detection-pipeline`` command of the README: its line, its text and its arguments."""

    line: int
    text: str
    argv: list[str]


def blocks(text: str) -> list[tuple[int, str, list[tuple[int, str]]]]:
    """``(line of the fence, the line before it, [(line, text)])`` of every bash/console block."""
    out, current, lines = [], None, text.splitlines()
    for number, line in enumerate(lines, start=1):
        fence = _FENCE.match(line)
        if fence and current is None:
            current = (number, lines[number - 2] if number > 1 else "", fence.group(1), [])
        elif fence and current is not None:
            if current[2] in ("bash", "console"):
                out.append((current[0], current[1], current[3]))
            current = None
        elif current is not None:
            current[3].append((number, line))
    return out


def _logical_lines(block: list[tuple[int, str]]) -> list[tuple[int, str]]:
    joined, pending, start = [], "", 0
    for number, raw in block:
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        line = line.removeprefix("$ ")
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        if pending + line:
            joined.append((start, pending + line))
        pending = ""
    return joined


def commands(text: str) -> list[Command]:
    """Every ``detection-pipeline`` command of the README's shell blocks, variables expanded."""
    variables: dict[str, str] = {}
    found = []
    for _, _, block in blocks(text):
        for number, line in _logical_lines(block):
            if assignment := _ASSIGNMENT.match(line):
                variables[assignment.group(1)] = assignment.group(2)
                continue
            words = shlex.split(re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), m.group(0)), line))
            while words and _ASSIGNMENT.match(words[0]):  # VAR=value prefixes
                words = words[1:]
            if words and words[0].endswith("detection-pipeline"):
                found.append(Command(number, line, words[1:]))
    return found


def walkthrough(text: str) -> str:
    """The shell text of the block marked as the walk-through."""
    for _, before, block in blocks(text):
        if before.strip() == WALKTHROUGH_MARKER:
            return "\n".join(line for _, line in block) + "\n"
    raise AssertionError(f"README.md has no block after {WALKTHROUGH_MARKER}")


def rejected(text: str) -> list[str]:
    """``README.md:<line>: <command> / <the CLI's error>`` for each command the CLI's parser refuses."""
    import contextlib
    import io

    from include.cli import build_parser

    parser, problems = build_parser(), []
    for command in commands(text):
        if command.argv[:1] == ["stack"]:
            continue  # handed over to devtools.stack
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                parser.parse_args(command.argv)
        except SystemExit as exit_:
            if exit_.code:
                problems.append(f"README.md:{command.line}: {command.text} / {err.getvalue().strip().splitlines()[-1]}")
    return problems


def readme_text(path: Path = README) -> str:
    return path.read_text()
