"""`slam l2-build`: turn a seed set and its annotations into an L² training set, named as the paper does.

Usage:
    slam l2-build --data annotations.jsonl --source o1 --output_dir data/   # slam annotate writes seed + translations
    slam l2-build --data ../shared/data/mgsm/exemplars.jsonl --source mgsm-exemplars --languages en zh ja

Rows are MGSM-style (`id`, `lang`, `question`, `answer`, `steps` or `cot`; a row without `lang` is English). The set is
saved with `datasets.Dataset.save_to_disk` under `OUTPUT_DIR/L2-M_{source}_{languages}_{samples}` and its
statistics are printed. `--source` is a plain name (letters, digits, space, `.`, `_`, `+`, `-`; no path
separators), so the set is always written inside `OUTPUT_DIR`.
"""

from __future__ import annotations

import re

from slam_trainer.cli.errors import CommandError
from slam_trainer.l2.parallel import ON_INVALID
from slam_trainer.l2.segmentation import MODES as SEGMENTATION_MODES


def make_parser(subparsers):
    parser = subparsers.add_parser(
        "l2-build",
        help="Build the parallel L² training set from seed + annotations.",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--data", nargs="+", required=True, help="JSON-lines files of per-language rows.")
    parser.add_argument(
        "--source",
        required=True,
        help="Name of the seed source for the set's name, e.g. o1, s1K (no path separators).",
    )
    parser.add_argument("--languages", nargs="+", default=None, help="Languages to keep (default: all seen).")
    parser.add_argument("--output_dir", required=True, help="Folder to save the dataset under.")
    parser.add_argument(
        "--on_invalid",
        default="drop",
        choices=ON_INVALID,
        help="Drop invalid examples with a count, or fail listing them.",
    )
    parser.add_argument(
        "--segmentation",
        default="auto",
        choices=SEGMENTATION_MODES,
        help="How a `cot` text is cut into steps.",
    )
    return parser


SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+-]*")


def main(args) -> None:
    import json
    from pathlib import Path

    from slam_trainer.data.loaders import load_jsonl_rows
    from slam_trainer.l2.parallel import build_parallel_dataset, dataset_name, parallel_statistics, select_languages

    if not SOURCE_NAME.fullmatch(args.source):
        raise CommandError(
            f"`--source` {args.source!r} must be a plain name such as o1 or s1K (letters, digits, space, . _ + -; "
            "no path separators): it becomes part of the folder name under --output_dir."
        )
    output_dir = Path(args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise CommandError(f"`--output_dir` {output_dir} is a file; give a folder.")
    rows = []
    for path in args.data:
        for row in load_jsonl_rows(path, required=("id", "question", "answer")):
            rows.append({"lang": "en", **row})
    if not rows:
        raise CommandError(f"`--data` {' '.join(args.data)}: the file(s) hold no rows.")
    rows = select_languages(rows, args.languages or None, "--languages")
    dataset, report = build_parallel_dataset(
        rows, languages=args.languages, on_invalid=args.on_invalid, segmentation=args.segmentation
    )
    stats = parallel_statistics(dataset)
    name = dataset_name(args.source, len(stats["languages"]), stats["examples"])
    target = output_dir / name.replace(" ", "_")
    if target.resolve().parent != output_dir.resolve():  # `--source` is checked above; this guards the rule itself
        raise CommandError(f"the set's folder {target} would lie outside `--output_dir` {output_dir}.")
    dataset.save_to_disk(str(target))
    print(f"{name}: {report.summary()}")
    print(json.dumps(stats, ensure_ascii=False))
    print(f"saved to {target}")
