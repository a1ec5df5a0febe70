"""``selfj-trl <command>``: a thin dispatcher over each stage's ``main(argv)``.

Each stage module owns its config dataclass and parses it with ``TrlParser`` (YAML via ``--config`` and flags), so
the CLI, the recipes and ``accelerate launch -m selfj_trl.<stage>`` share one code path. Modules are imported only
when their command runs, so ``selfj-trl --help`` is instant. Failures the package raises on purpose become one line
on stderr, never a traceback: input the user can fix (:class:`~selfj_trl.errors.SelfJInputError`, a path that is
missing or of the wrong kind, a file that is not JSON) exits 2, a run that failed on valid input
(:class:`~selfj_trl.errors.SelfJRuntimeError`: a diverging loss, a refused upload) exits 1. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable

from .errors import SelfJInputError, SelfJRuntimeError


#: command -> (module whose ``main(argv)`` runs it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "setup-models": ("selfj_trl.models", "build the offline default models' local folders"),
    "label": ("selfj_trl.labeling", "stage 1: sample responses and label them with Self-J"),
    "train": ("selfj_trl.trainer", "stage 2: train a judge with SelfJRewardTrainer"),
    "score": ("selfj_trl.score", "score (instruction, response) rows with a judge"),
    "best-of-n": ("selfj_trl.best_of_n", "sample n answers, keep the judge's best; build DPO pairs"),
    "evaluate": ("selfj_trl.evaluation", "evaluate judges and baselines on held-out data"),
    "signal": ("selfj_trl.label_report", "measure labeling signals against GPT-4 on the train split"),
    "serve": ("selfj_trl.serve", "serve a judge over HTTP (OpenRLHF remote reward protocol)"),
    "push": ("selfj_trl.push", "upload a judge (and its labeled dataset) to the Hugging Face Hub"),
    "quickstart": ("selfj_trl.quickstart", "run the whole Self-J loop on the offline models"),
}

EXIT_INPUT_ERROR = 2
EXIT_RUNTIME_ERROR = 1
EXIT_INTERRUPTED = 130


def usage() -> str:
    lines = ["usage: selfj-trl <command> [options]   (selfj-trl <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<13} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def run_main(main_fn: Callable[[list[str]], int | None], argv: list[str], prog: str) -> int:
    """Call ``main_fn(argv)``; our own failures become one line on stderr (``prog: error: ...``) and an exit code."""
    try:
        return int(main_fn(argv) or 0)
    except SelfJInputError as err:
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as err:
        if err.filename is None and not isinstance(err, FileNotFoundError):
            raise  # not about a path the user named: a bug, shown with its traceback
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except json.JSONDecodeError as err:
        print(f"{prog}: error: not valid JSON: {_one_line(err)}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except SelfJRuntimeError as err:
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_RUNTIME_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished work is kept, re-run the same command to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED


def run_command(command: str, argv: list[str], prog: str | None = None) -> int:
    """Run one command (its module is imported only now) through :func:`run_main`."""
    module_name, _ = COMMANDS[command]
    return run_main(lambda args: importlib.import_module(module_name).main(args), argv, prog or f"selfj-trl {command}")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"selfj-trl: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    if "--accelerate_config" in rest:
        from .launch import ACCELERATE_MODULES, launch

        if command in ACCELERATE_MODULES:
            return run_main(lambda args: launch(command, args), rest, f"selfj-trl {command}")
    return run_command(command, rest)


if __name__ == "__main__":
    sys.exit(main())
