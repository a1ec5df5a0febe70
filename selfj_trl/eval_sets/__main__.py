"""``python -m selfj_trl.eval_sets [NAME ...]``: fetch the built-in held-out sets from their public files into the
cache now, so that later runs (offline ones too) evaluate without the project's data folder. One line per set;
exit status 2 when any set could not be had."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from . import registered_sets, resolve_eval_set_name
    from .sources import PublicDataUnavailable, cache_root

    public = {name: entry.public for name, entry in registered_sets().items() if entry.public is not None}
    names = [resolve_eval_set_name(a) or a for a in (sys.argv[1:] if argv is None else argv)] or list(public)
    unknown = [n for n in names if n not in public]
    if unknown:
        print(f"error: no public files known for {unknown}; choose from {list(public)}.", file=sys.stderr)  # noqa: T201
        return 2
    failed = 0
    for name in names:
        try:
            folder, notes = public[name].ensure()
        except PublicDataUnavailable as err:
            failed += 1
            print(f"error: {err}", file=sys.stderr)  # noqa: T201
            continue
        print(f"{name}: {folder} ({'; '.join(notes)})")  # noqa: T201
    print(f"cache: {cache_root()}")  # noqa: T201
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
