"""``selfj-trl <command>``: a thin dispatcher over each stage's ``main(argv)``.

Each stage module owns its config dataclass and parses it with ``TrlParser`` (YAML via ``--config`` and flags), so
the CLI, the recipes and ``accelerate launch -m selfj_trl.<stage>`` share one code path. Errors the user can fix
(:class:`~selfj_trl.errors.SelfJInputError`) become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

from .errors import SelfJInputError

COMMANDS: dict[str, tuple[str, str]] = {
    "setup-models": ("selfj_trl.models", "build the offline default models' local folders"),
    "label": ("selfj_trl.labeling", "stage 1: sample responses and label them with Self-J"),
    "train": ("selfj_trl.trainer", "stage 2: train a judge with SelfJRewardTrainer"),
    "score": ("selfj_trl.judge", "score (instruction, response) rows with a judge"),
    "best-of-n": ("selfj_trl.best_of_n", "sample n answers, keep the judge's best; build DPO pairs"),
    "evaluate": ("selfj_trl.evaluation", "evaluate judges and baselines on held-out data"),
    "signal": ("selfj_trl.signal", "measure labeling signals against GPT-4 on the train split"),
    "serve": ("selfj_trl.serve", "serve a judge over HTTP (OpenRLHF remote reward protocol)"),
    "quickstart": ("selfj_trl.quickstart", "run the whole Self-J loop on the offline models"),
}


def _usage() -> str:
    lines = ["usage: selfj-trl <command> [options]   (selfj-trl <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<13} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def run(command: str, argv: list[str]) -> int:
    module_name, _ = COMMANDS[command]
    module = importlib.import_module(module_name)
    return int(module.main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"selfj-trl: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        return run(command, rest)
    except SelfJInputError as err:
        print(f"selfj-trl {command}: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"selfj-trl {command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"selfj-trl {command}: interrupted; finished work is kept, re-run the same command to resume.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
