"""``python -m pcg_inspect`` and the ``pcg-inspect`` command.

Ctrl-C is handled before anything else is imported: at any moment it stops the run's children (their
process groups), writes no half file, prints one line and exits 130.
"""

from __future__ import annotations

import signal
import sys


def _interrupt(signum: int, frame: object) -> None:
    from .errors import Interrupted

    raise Interrupted()


def main() -> None:
    """Console-script entry point."""
    from .errors import EXIT_INTERRUPTED, Interrupted

    signal.signal(signal.SIGINT, _interrupt)
    try:
        from .cli import app

        app()
    except Interrupted:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the way out
        try:
            sys.stderr.write("interrupted\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - a closed stderr
            pass
        raise SystemExit(EXIT_INTERRUPTED) from None


if __name__ == "__main__":
    main()
