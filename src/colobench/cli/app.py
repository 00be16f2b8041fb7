"""The typer application every command registers on, the two consoles, and `main`: how every
error becomes one line and an exit code.

Exit codes: 0 done, 1 ran but a worker failed, 2 bad input (one line on stderr, nothing
written), 128 + the signal when stopped (130 for Ctrl-C; what completed is summarised and kept).
Tables go to stdout and its last line is one line of JSON; progress and messages go to stderr,
so `colobench run | tail -1 | jq` works.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import typer
from rich.console import Console
from rich.markup import escape
from rich.segment import Segment

from colobench import stopping
from colobench.errors import ColobenchError, os_reason
from colobench.secrets import ScrubbingStream
from colobench.text import printable

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="rich", no_args_is_help=True,
                  help="Benchmark LLM inference alone and co-located; diagnose why instances slow each other.")


class SafeConsole(Console):
    """A rich console that never lets text from outside drive the terminal: every text segment
    (a table cell, a message, a `Text`) has its control characters escaped (`colobench.text`)
    after rendering, while rich's own control segments (cursor moves of a progress bar) and
    styles pass. Rich strips only BEL, BS, VT, FF and CR itself, not ESC."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            Segment(printable(text, one_line=False), style, control) if control is None and text else
            Segment(text, style, control) for text, style, control in buffer)


def stdout() -> Console:
    """stdout for tables: every line scrubbed of the secrets this process knows (see `secrets`)."""
    return SafeConsole(file=ScrubbingStream(sys.stdout), width=None if sys.stdout.isatty() else 160, highlight=False,
                   force_terminal=sys.stdout.isatty() or None)


def stderr() -> Console:
    return SafeConsole(file=ScrubbingStream(sys.stderr), stderr=True, highlight=False,
                   force_terminal=sys.stderr.isatty() or None)


SIDE_BREAK = "\0--"  # `compare A1 A2 -- B1 B2`: the `--` click would drop, kept (no path holds a NUL)


def _args(argv: list[str]) -> list[str]:
    """The arguments click gets: a `--` between `compare`'s two sides becomes `SIDE_BREAK`."""
    if argv[:1] == ["compare"] and "--" in argv:
        k = argv.index("--")
        return argv[:k] + [SIDE_BREAK] + argv[k + 1:]
    return argv


def main() -> None:
    try:
        code = app(args=_args(sys.argv[1:]), standalone_mode=False, prog_name="colobench")
    except ColobenchError as exc:
        stderr().print(f"[red]error:[/] {escape(printable(str(exc)))}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        stderr().print("[yellow]interrupted[/]")
        sys.exit(128 + exc.signum if isinstance(exc, stopping.StopRequested) else 130)
    except OSError as exc:  # a file, folder or port problem no command caught by name: still one line
        where = f"{exc.filename}: " if exc.filename else ""
        stderr().print(f"[red]error:[/] {escape(printable(where + os_reason(exc)))}", soft_wrap=True)
        sys.exit(2)
    except Exception as exc:
        # typer vendors its own click, so its exceptions are matched by their API, not their class
        kind = type(exc).__name__
        if kind == "Abort":
            stderr().print("[yellow]interrupted[/]")
            sys.exit(130)
        if kind == "Exit":
            sys.exit(getattr(exc, "exit_code", 0))
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # usage errors: one line, exit 2
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None and getattr(ctx, "command_path", None) else ""
            stderr().print(f"[red]error:[/] {escape(' '.join(message.split()))}{escape(hint)}", soft_wrap=True)
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
