"""`slam demo`: the whole SLAM pipeline on a real pretrained model, on a CPU, with no network.

Usage:
    slam demo                                   # SmolLM2-135M-Instruct (installed by `make demo`), ~10 minutes
    slam demo --model gemma3-270m --languages en es ru zh
    slam demo --model tiny:llama                # a random tiny model: the mechanics only, in seconds

Steps: load the model (an offline short name is converted once and cached); generate the package's synthetic
multilingual arithmetic world, one-step problems by default, with held-out problems that share no
(template, numbers) pair with the training problems; identify the language-specific layers on the training questions
(`slam_layers="auto"`: report JSON + heatmap PNG); evaluate per language; train those layers' FFN sub-layers with SLAM
on the question-alignment + answer set; save the FFN delta; evaluate base + delta on the same held-out problems; merge
the delta into a normal model directory; write `summary.json` (accuracy before/after per language, layers, trainable
share, training time). The steps are `slam_trainer.pipelines.demo`'s functions; every default there is ours, chosen so
that the gain is visible in minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse

from slam_trainer.pipelines.demo import DEFAULT_MODEL


def make_parser(subparsers):
    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline on a real model (default) or a tiny one", description=__doc__
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"Offline short name, local folder or Hub id, or tiny:<architecture> (default: {DEFAULT_MODEL}).",
    )
    parser.add_argument("--output_dir", default="demo-output", help="Where every artefact is written.")
    parser.add_argument("--languages", nargs="+", default=None, help="Languages (default: en es fr de ru zh).")
    parser.add_argument("--world", default="one-step", choices=("one-step", "multi-step"), help="Synthetic world.")
    parser.add_argument("--train_problems", type=int, default=None, help="Training problems (each in every language).")
    parser.add_argument("--eval_problems", type=int, default=None, help="Held-out problems per language.")
    parser.add_argument("--num_layers", type=int, default=None, help="Layers auto mode chooses (default: 6).")
    parser.add_argument(
        "--probe_problems", type=int, default=None, help="Training problems the layer probe reads (default: 40)."
    )
    parser.add_argument("--max_steps", type=int, default=None, help="SLAM training steps (default: 40).")
    parser.add_argument("--learning_rate", type=float, default=None, help="Peak learning rate (default: 1e-3).")
    parser.add_argument("--batch_size", type=int, default=8, help="Training batch size (default: 8).")
    parser.add_argument("--max_new_tokens", type=int, default=None, help="Token limit per answer (default: 40).")
    parser.add_argument("--seed", type=int, default=0, help="Seeds the data, the tiny model and the training.")
    return parser


def main(args: argparse.Namespace) -> None:
    import os
    import time

    from slam_trainer.data.synthetic import problem_rows
    from slam_trainer.delta import save_ffn_delta
    from slam_trainer.evaluation.report import format_table
    from slam_trainer.pipelines import demo
    from slam_trainer.pipelines.merge import merge_ffn_delta

    given = {name: getattr(args, name) for name in demo.DemoSettings.__dataclass_fields__}
    settings = demo.resolve_settings(demo.DemoSettings(**given))
    paths, problems = demo.prepare(settings)
    started = time.perf_counter()

    print(f"[1/7] Loading {settings.model}")
    model, tokenizer, base_dir = demo.load(settings, paths["base"])

    counts = f"{len(problems['train'])} training, {len(problems['eval'])} held-out problems"
    print(f"[2/7] Synthetic {settings.world} world ({', '.join(settings.languages)}): {counts}")
    files = demo.write_data(problems, paths["data"])

    print("[3/7] Evaluating the base model per language on the held-out problems")
    before = demo.evaluate(settings, base_dir, tokenizer, files["eval"], os.path.join(paths["eval"], "before"))

    print(f"[4/7] Identifying language-specific layers; training their FFNs with SLAM ({settings.max_steps} steps)")
    train_rows = problem_rows(problems["train"])
    trainer = demo.build_trainer(settings, model, tokenizer, train_rows, files["probe"], paths["train"])
    print(trainer.slam_layer_report.format_table())
    print(trainer.slam_report)
    train_started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print(f"      loss {losses[0]:.3f} -> {losses[-1]:.3f} in {train_seconds:.0f} s")

    print(f"[5/7] Saving the FFN delta -> {paths['delta']}")
    save_ffn_delta(trainer, paths["delta"])

    print("[6/7] Evaluating base + delta per language on the same held-out problems")
    eval_after = os.path.join(paths["eval"], "after")
    after = demo.evaluate(settings, base_dir, tokenizer, files["eval"], eval_after, paths["delta"])
    before["run"], after["run"] = "before", "after"
    print(format_table([before, after]))

    print(f"[7/7] Merging base + delta into a normal model directory -> {paths['merged']}")
    merged = merge_ffn_delta(base_dir, paths["delta"], paths["merged"])
    print(merged.describe(base_dir))

    summary = demo.summary(settings, trainer, before, after, train_seconds, time.perf_counter() - started)
    demo.write_summary(paths["summary"], summary)
    _print_outcome(settings, summary, paths)


def _print_outcome(settings, summary: dict, paths: dict) -> None:
    import os

    gain = summary["non_english_average"]
    print(
        f"\nNon-English average accuracy on held-out problems: {100 * gain['before']:.1f}% -> "
        f"{100 * gain['after']:.1f}% ({len(settings.languages) - 1} languages, {settings.eval_problems} problems "
        f"each; {summary['total_seconds']:.0f} s in all)"
    )
    print("\nArtefacts:")
    for label, path in [
        ("summary (JSON)", paths["summary"]),
        ("layer report (JSON)", os.path.join(paths["train"], "language_layers.json")),
        ("layer heatmap (PNG)", os.path.join(paths["train"], "language_layers.png")),
        ("FFN delta", paths["delta"]),
        ("merged model", paths["merged"]),
        ("evaluation before", os.path.join(paths["eval"], "before")),
        ("evaluation after", os.path.join(paths["eval"], "after")),
    ]:
        print(f"  {label:<22} {path}")
