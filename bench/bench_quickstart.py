"""Wall time and peak memory (max RSS) of each quickstart stage, each stage in its own process (prints its figures).

    python bench/bench_quickstart.py --output_dir outputs/bench_quickstart [--fresh] [-- extra quickstart flags]

Stages already done in ``output_dir`` are cached by the quickstart and measured as such; pass ``--fresh`` to measure
everything from scratch (model set-up included, unless the model cache in ~/.cache/selfj_trl is already warm).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


STAGES = ["setup", "label", "train", "evaluate", "use"]


def run_stage(stage: str, output_dir: str, extra: list[str]) -> tuple[int, float, float]:
    cmd = [sys.executable, "-m", "selfj_trl.cli", "quickstart", "--output_dir", output_dir, "--stages", stage, *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(proc.stderr.read()[-2000:], file=sys.stderr)
    return code, seconds, usage.ru_maxrss / 1024  # KiB -> MiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/bench_quickstart")
    parser.add_argument("--fresh", action="store_true")
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    if args.fresh and Path(args.output_dir).exists():
        shutil.rmtree(args.output_dir)
    print(f"{'stage':<10} {'exit':>4} {'seconds':>8} {'peak RSS (MiB)':>15}")
    total = 0.0
    for stage in STAGES:
        code, seconds, peak = run_stage(stage, args.output_dir, extra)
        total += seconds
        print(f"{stage:<10} {code:>4} {seconds:>8.1f} {peak:>15.0f}", flush=True)
        if code != 0:
            break
    print(f"{'total':<10} {'':>4} {total:>8.1f}")


if __name__ == "__main__":
    main()
