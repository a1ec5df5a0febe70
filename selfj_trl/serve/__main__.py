"""``python -m selfj_trl.serve``: the same as ``selfj-trl serve``."""

import sys

from ..cli import main as cli_main


sys.exit(cli_main(["serve", *sys.argv[1:]]))
