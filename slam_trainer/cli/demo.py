"""`slam demo`: the whole SLAM pipeline on the embedded default, in a few minutes on a CPU, with no network.

Usage:
    slam demo
    slam demo --output_dir demo-output --max_steps 120 --languages en zh th

Steps: build a tiny Llama from a config and the byte-level tokenizer; generate the synthetic multilingual
arithmetic world (train and held-out problems); identify the language-specific layers (`slam_layers="auto"`:
report JSON + heatmap PNG); evaluate per language; train those layers' FFN sub-layers with SLAM on the
question-alignment + answer set; save the FFN delta; evaluate base + delta; merge the delta into a normal model
directory; print where each artefact is. A random tiny model does not learn arithmetic in a few steps: the demo
shows the mechanics and the falling loss, not accuracy.
"""

from __future__ import annotations

import argparse


DEFAULT_LANGUAGES = ["en", "es", "ru", "zh", "ja", "th", "bn"]


def make_parser(subparsers):
    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline on the embedded default", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--output_dir", default="demo-output", help="Where every artefact is written.")
    parser.add_argument("--languages", nargs="+", default=DEFAULT_LANGUAGES, help="Languages of the synthetic world.")
    parser.add_argument("--train_problems", type=int, default=48, help="Synthetic training problems (per language).")
    parser.add_argument("--eval_problems", type=int, default=6, help="Held-out problems evaluated per language.")
    parser.add_argument("--num_layers", type=int, default=2, help="Layers auto mode chooses (of the tiny model's 8).")
    parser.add_argument("--max_steps", type=int, default=200, help="SLAM training steps.")
    parser.add_argument("--max_new_tokens", type=int, default=32, help="Tokens generated per evaluation question.")
    parser.add_argument("--seed", type=int, default=0, help="Seeds the model, the data and the training.")
    return parser


def _write_jsonl(path, rows) -> None:
    import json

    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _evaluate(model_dir: str, data: str, output_dir: str, args, delta: str | None = None) -> dict:
    from slam_trainer.evaluation.runner import EvalSettings, run_evaluation

    settings = EvalSettings(
        model=model_dir,
        data=data,
        delta=delta,
        batch_size=16,
        max_new_tokens=args.max_new_tokens,
        dtype="float32",
        device="cpu",
        seed=args.seed,
    )
    return run_evaluation(settings, output_dir, progress=False)[0]


def main(args: argparse.Namespace) -> None:
    import os

    from slam_trainer.cli import merge
    from slam_trainer.config import SelectiveFFNConfig
    from slam_trainer.data.slam_mix import build_slam_training_set
    from slam_trainer.data.synthetic import synthetic_rows
    from slam_trainer.delta import save_ffn_delta
    from slam_trainer.evaluation.report import format_table
    from slam_trainer.languages import validate_languages
    from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer
    from slam_trainer.trainer import SelectiveFFNTrainer

    languages = validate_languages(args.languages, argument="--languages", min_count=2)
    out = os.path.abspath(args.output_dir)
    paths = {name: os.path.join(out, name) for name in ("base", "data", "train", "delta", "merged", "eval")}
    for name in ("data", "eval"):
        os.makedirs(paths[name], exist_ok=True)
    if os.path.exists(paths["merged"]) and os.listdir(paths["merged"]):
        raise ValueError(f"{paths['merged']} exists from an earlier run; pass a new --output_dir or remove it.")

    print(f"[1/7] Tiny Llama (8 layers) and byte-level tokenizer -> {paths['base']}")
    model, tokenizer = build_tiny_model("llama", num_layers=8, hidden_size=64, seed=args.seed), build_tiny_tokenizer()
    model.save_pretrained(paths["base"])
    tokenizer.save_pretrained(paths["base"])

    print(f"[2/7] Synthetic multilingual arithmetic world ({', '.join(languages)}) -> {paths['data']}")
    train_rows = synthetic_rows(args.train_problems, languages=languages, seed=args.seed)
    eval_rows = synthetic_rows(args.eval_problems, languages=languages, seed=args.seed + 1000)
    train_file, eval_file = os.path.join(paths["data"], "train.jsonl"), os.path.join(paths["data"], "eval.jsonl")
    _write_jsonl(train_file, train_rows)
    _write_jsonl(eval_file, [{k: row[k] for k in ("id", "lang", "question", "answer")} for row in eval_rows])

    print("[3/7] Evaluating the base model per language")
    before = _evaluate(paths["base"], eval_file, os.path.join(paths["eval"], "before"), args)

    print(f"[4/7] Identifying language-specific layers and training them with SLAM ({args.max_steps} steps)")
    config = SelectiveFFNConfig(
        output_dir=paths["train"],
        slam_layers="auto",
        slam_num_layers=args.num_layers,
        slam_probe_dataset=train_file,
        max_steps=args.max_steps,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        lr_scheduler_type="cosine",
        max_length=768,
        logging_steps=25,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        disable_tqdm=True,
    )
    trainer = SelectiveFFNTrainer(
        model=model, args=config, train_dataset=build_slam_training_set(train_rows), processing_class=tokenizer
    )
    print(trainer.slam_layer_report.format_table())
    print(trainer.slam_report)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print(f"      loss {losses[0]:.3f} -> {losses[-1]:.3f}")

    print(f"[5/7] Saving the FFN delta -> {paths['delta']}")
    save_ffn_delta(trainer, paths["delta"])

    print("[6/7] Evaluating base + delta per language")
    after = _evaluate(paths["base"], eval_file, os.path.join(paths["eval"], "after"), args, delta=paths["delta"])
    before["run"], after["run"] = "before", "after"
    print(format_table([before, after]))

    print(f"[7/7] Merging base + delta into a normal model directory -> {paths['merged']}")
    merge.main(
        argparse.Namespace(
            base=paths["base"],
            delta=paths["delta"],
            out=paths["merged"],
            revision=None,
            delta_revision=None,
            dtype="auto",
            trust_remote_code=False,
        )
    )

    print("\nArtefacts:")
    for label, path in [
        ("layer report (JSON)", os.path.join(paths["train"], "language_layers.json")),
        ("layer heatmap (PNG)", os.path.join(paths["train"], "language_layers.png")),
        ("FFN delta", paths["delta"]),
        ("merged model", paths["merged"]),
        ("evaluation before", os.path.join(paths["eval"], "before")),
        ("evaluation after", os.path.join(paths["eval"], "after")),
    ]:
        print(f"  {label:<22} {path}")
