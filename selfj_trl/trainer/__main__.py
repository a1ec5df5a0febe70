"""``python -m selfj_trl.trainer`` / ``accelerate launch -m selfj_trl.trainer``: the same as ``selfj-trl train``."""

import sys

from ..cli import main as cli_main


sys.exit(cli_main(["train", *sys.argv[1:]]))
