"""The contrast answers ``selfj-trl label --contrast_answers KIND...`` would add to a labeling run, written as a
table of given answers to label on their own, so that labels a run already made are not made again.

    python recipes/results/contrast_pool.py --config recipes/gemma-3-270m/label/config_alpaca_train_pool.yaml \
        --max_instructions 48 --contrast_answers reference other_instruction cut repeated padded \
        --out outputs/contrast48.jsonl
    selfj-trl label --config recipes/gemma-3-270m/label/config_alpaca_train_pool.yaml --num_samples 0 \
        --dataset_name outputs/contrast48.jsonl --output_dir outputs/labeled/contrast48

The rows are those of the run the same flags describe (same instructions, seed and draws), one per (instruction,
kind), with ``model`` = the kind. Their labels depend on each row alone (the weighted-mean label), so they are the
labels the combined run would give them. ``recipes/results/distill_cv.py --contrast`` adds them to the training
folds.
"""

from __future__ import annotations

import json
import sys

from selfj_trl.errors import SelfJInputError
from selfj_trl.flags import parse
from selfj_trl.io import atomic_write_text
from selfj_trl.labeling import LabelingConfig, load_source, prepare_rows
from selfj_trl.labeling.contrast import add_contrast_answers


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--out" not in argv[:-1]:
        print("contrast_pool: --out FILE.jsonl is required", file=sys.stderr)
        return 2
    i = argv.index("--out")
    out, argv = argv[i + 1], argv[:i] + argv[i + 2 :]
    try:
        (config,) = parse((LabelingConfig,), argv, prog="contrast_pool")
        if not config.contrast_answers:
            raise SelfJInputError("--contrast_answers KIND... is required.")
        rows, _ = prepare_rows(load_source(config), config)
    except SelfJInputError as err:
        print(f"contrast_pool: error: {err}", file=sys.stderr)
        return 2
    table = [
        {"instruction": r["instruction"], "reference": r["reference"], "response": c["response"], "model": c["model"]}
        for r in add_contrast_answers(rows, config.contrast_answers, config.seed)
        for c in r["contrast"]
    ]
    atomic_write_text(out, "".join(json.dumps(row) + "\n" for row in table))
    print(f"{len(table)} contrast answers to {len(rows)} instructions -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
