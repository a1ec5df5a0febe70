"""``python -m selfj_trl.label_report``: the same as ``selfj-trl signal``."""

import sys

from ..cli import main as cli_main


sys.exit(cli_main(["signal", *sys.argv[1:]]))
