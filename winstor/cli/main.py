"""The `winstor` command: the embedded cluster and the tools around a run.

Every subcommand turns bad input into one line on stderr and exit code 2,
never a traceback: people run this in CI logs they did not write.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from winstor.errors import UsageError


def build_parser(more: bool = True) -> argparse.ArgumentParser:
    """The whole command line; ``more=False`` leaves out the subcommands of other modules.

    Those modules import the Kubernetes client (~0.6 s), which `winstor sim ...` never uses and
    `winstor sim up` cannot afford: its start-up time is how long every bare pytest run waits.
    """
    parser = argparse.ArgumentParser(
        prog="winstor",
        description="Conformance checks for persistent storage on Windows Kubernetes nodes. "
                    "The checks themselves run under pytest; this command serves the embedded "
                    "cluster and handles reports, bundles and leftovers.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from winstor.cli import sim as sim_command

    sim_command.register(sub)
    if more:
        _register_more(sub)
    return parser


def _register_more(sub: argparse._SubParsersAction) -> None:
    """Subcommands that live in their own modules (reports and bundles, janitor, kind)."""
    import importlib

    for name in ("run", "reports", "janitor", "kind", "controlplane"):
        try:
            module = importlib.import_module(f".{name}", __package__)
        except ModuleNotFoundError as err:
            if err.name != f"{__package__}.{name}":
                raise
            continue
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        # Everything after `run` is pytest's, `--help` included: argparse would claim
        # options such as -k or -h for itself.
        from winstor.cli import run

        return run.run_pytest(argv[1:])
    parser = build_parser(more=argv[:1] != ["sim"])
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except UsageError as err:
        print(f"winstor: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"winstor: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
