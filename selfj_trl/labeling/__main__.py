"""``python -m selfj_trl.labeling`` and ``accelerate launch -m selfj_trl.labeling --config ...``."""

import sys

from ..cli import main as cli_main


sys.exit(cli_main(["label", *sys.argv[1:]]))
