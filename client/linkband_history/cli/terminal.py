"""What the tool writes to stdout: colours, widths and a pager, the way journalctl does.

- **Colour** only when stdout is a terminal, without ``--json``, and with neither
  ``NO_COLOR`` (https://no-color.org) nor ``TERM=dumb`` set: log levels get their
  colour and the terms a search matched are bold red. Piped output is plain text.
  The escapes come from ``click.style``.
- **Width** is counted in terminal cells: a Korean syllable takes two
  (``unicodedata.east_asian_width`` W or F), a combining mark none, so columns of
  Korean text line up.
- **Pager**: long output goes through ``$LINKBAND_HISTORY_PAGER``, else ``$PAGER``,
  else ``less``, with ``LESS=FRSXMK`` unless ``LESS`` is set (journalctl's default:
  quit when it fits one screen, keep colours, chop long lines, leave the text on the
  screen). Never when stdout is not a terminal, with ``--json``, ``--no-pager``, for
  streams (``logs -f``, ``events``) or when the pager variable is empty or ``cat``.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import unicodedata

import click

LEVEL_STYLE = {"DEBUG": {"dim": True}, "INFO": {"fg": "green"}, "WARNING": {"fg": "yellow"},
               "ERROR": {"fg": "red"}, "CRITICAL": {"fg": "red", "bold": True, "reverse": True}}
MATCH_STYLE = {"fg": "red", "bold": True}


def char_width(ch: str) -> int:
    """Terminal cells one character takes: 2 for wide East Asian, 0 for combining."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    return sum(char_width(c) for c in text)


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells, with … where it was cut."""
    if display_width(text) <= width:
        return text
    out, used = [], 0
    for c in text:
        w = char_width(c)
        if used + w > width - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + "…"


class Cell:
    """A table cell: its plain text (for widths) and what is printed (maybe styled)."""

    __slots__ = ("plain", "shown")

    def __init__(self, plain: str, shown: str | None = None):
        self.plain, self.shown = plain, plain if shown is None else shown

    def ljust(self, width: int) -> str:
        return self.shown + " " * max(0, width - display_width(self.plain))

    def rjust(self, width: int) -> str:
        return " " * max(0, width - display_width(self.plain)) + self.shown


def color_wanted(as_json: bool, stream=None) -> bool:
    stream = stream or sys.stdout
    if as_json or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def pager_command() -> list[str] | None:
    """The pager to run, or None (none wanted or none found)."""
    for var in ("LINKBAND_HISTORY_PAGER", "PAGER"):
        if var in os.environ:
            cmd = os.environ[var].strip()
            if not cmd or cmd == "cat":
                return None
            return shlex.split(cmd, posix=os.name != "nt")
    less = shutil.which("less")
    return [less] if less else None


class Terminal:
    """The tool's stdout. Everything a subcommand prints goes through :meth:`echo`,
    which starts the pager on the first line when one is wanted."""

    def __init__(self, as_json: bool, no_pager: bool):
        self.color = color_wanted(as_json)
        self.may_page = not (as_json or no_pager) and sys.stdout.isatty()
        self._pager: subprocess.Popen | None = None
        self._closed = False                  # the pager quit before the end

    def style(self, text: str, **style) -> str:
        return click.style(text, **style) if self.color and style else text

    def level(self, level: str, width: int = 0) -> str:
        """A log level, coloured, padded to ``width`` cells."""
        return self.style(level, **LEVEL_STYLE.get(level, {})) + " " * max(0, width - len(level))

    def marked(self, text: str, spans) -> Cell:
        """``text`` with the ``[start, end)`` code-point ranges of ``spans`` highlighted."""
        if not self.color or not spans:
            return Cell(text)
        out, pos = [], 0
        for a, b in sorted(spans):
            a, b = max(a, pos), min(b, len(text))
            if b <= a:
                continue
            out += [text[pos:a], self.style(text[a:b], **MATCH_STYLE)]
            pos = b
        out.append(text[pos:])
        return Cell(text, "".join(out))

    def no_pager(self) -> None:
        """For streams: lines must appear as they come."""
        self.may_page = False

    def echo(self, text: str = "", nl: bool = True) -> None:
        if self._closed:
            return
        if self.may_page and self._pager is None:
            self._start_pager()
        if self._pager is None:
            click.echo(text, nl=nl, color=self.color)
            return
        try:
            self._pager.stdin.write((text + ("\n" if nl else "")).encode("utf-8", "replace"))
        except (BrokenPipeError, OSError):        # the user quit the pager
            self._closed = True

    def _start_pager(self) -> None:
        self.may_page = False
        cmd = pager_command()
        if not cmd:
            return
        env = dict(os.environ)
        env.setdefault("LESS", "FRSXMK")
        env.setdefault("LESSCHARSET", "utf-8")
        try:
            self._pager = subprocess.Popen(cmd, stdin=subprocess.PIPE, env=env)
        except OSError:
            self._pager = None

    def close(self) -> None:
        """Wait for the pager (it shows the end of the text until the user quits)."""
        if self._pager is None:
            return
        try:
            self._pager.stdin.close()
        except OSError:
            pass
        while True:
            try:
                self._pager.wait()
                return
            except KeyboardInterrupt:             # Ctrl-C is for the pager (less ignores it)
                continue

    def width(self) -> int | None:
        """The terminal's width when stdout is one (for the last column), else None."""
        if not sys.stdout.isatty():
            return None
        return shutil.get_terminal_size((120, 24)).columns
