"""``--accelerate_config``: the stages that run under accelerate launch themselves, as TRL's CLI does.

``selfj-trl train --accelerate_config multi_gpu ...`` is ``accelerate launch --config_file <multi_gpu.yaml> -m
selfj_trl.trainer ...``: TRL resolves the name (a file path, or one of the configs shipped in ``trl.accelerate_configs``:
single_gpu, multi_gpu, zero1/2/3, fsdp1/2, ...) and accelerate launches the processes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .errors import SelfJInputError


#: command -> the module accelerate runs with ``-m`` (the stages whose work is spread over processes)
ACCELERATE_MODULES = {"label": "selfj_trl.labeling", "train": "selfj_trl.trainer"}


def launch_arguments(module: str, argv: list[str]) -> list[str]:
    """``accelerate launch``'s arguments for ``module`` with ``argv``, split as TRL's CLI splits them: what the
    stage's parser (its module's ``make_parser()``) does not know goes to accelerate (``--num_processes``,
    ``--main_process_port``, the resolved ``--accelerate_config``), the rest to the stage."""
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    parser = importlib.import_module(module).make_parser()
    try:
        *_, config_remaining, cli_remaining = parser.parse_args_and_config(
            argv, return_remaining_strings=True, separate_remaining_strings=True
        )
        launch_args = resolve_accelerate_config_argument(config_remaining + cli_remaining)
    except ValueError as err:
        raise SelfJInputError(" ".join(str(err).split())) from err
    script_args = list(argv)
    for item in cli_remaining:  # an ordered subsequence of argv
        script_args.remove(item)
    return [*launch_args, "-m", module, *script_args]


def launch(command: str, argv: list[str], run: Callable[[Any], None] | None = None) -> int:
    """Run ``command`` under ``accelerate launch`` with the config ``--accelerate_config`` names."""
    from accelerate.commands.launch import launch_command, launch_command_parser

    args = launch_command_parser().parse_args(launch_arguments(ACCELERATE_MODULES[command], argv))
    (run or launch_command)(args)
    return 0
