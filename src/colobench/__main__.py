"""`colobench` and `python -m colobench`. The command's modules take a second or two to import: a
Ctrl-C meanwhile ends with one line and exit 130, as it does once the command runs (`cli.app`)."""

from __future__ import annotations

import sys

try:
    from colobench.cli import main
except KeyboardInterrupt:
    sys.stderr.write("interrupted\n")
    sys.exit(130)


def entry() -> None:
    main()


if __name__ == "__main__":
    entry()
