"""The klkit command (also ``python -m klkit``).

    klkit seq-kl [PATH ...]   per-sequence KL of log-prob files (Parquet, Arrow, JSON Lines)
    klkit sample OUT          write a realistic sample file of per-token log-probs
    klkit demo                the classic worked examples of KL divergence
    klkit info                version, kernel build, threads
    klkit bench               a quick speed table of the installed package

Each subcommand is a module of this package with ``add_parser(subparsers)``
and ``run(args) -> int``.  A user error (a missing file, a bad column, bad
data) is one line on stderr and exit status 2, without a traceback unless
``--debug``; Ctrl-C stops with status 130.
"""
import argparse
import importlib
import os
import sys

#: subcommand name -> module of this package
SUBCOMMANDS = {"seq-kl": "seq_kl", "sample": "sample", "demo": "demo", "info": "info",
               "bench": "bench"}


class CliError(Exception):
    """A user error: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse prints the usage first)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    from .. import __version__

    parser = _Parser(prog="klkit", description="Log-space probability math over files and "
                     "arrays: per-sequence KL of LLM log-probs, and more.",
                     epilog="Run 'klkit COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"klkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module in SUBCOMMANDS.items():
        mod = importlib.import_module(f"{__name__}.{module}")
        p = mod.add_parser(sub, name)
        p.add_argument("--debug", action="store_true",
                       help="show the full traceback of an error")
        p.set_defaults(run=mod.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    prog = f"klkit {args.command}"
    try:
        return args.run(args)
    except CliError as exc:
        if args.debug:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:               # e.g. `klkit ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
