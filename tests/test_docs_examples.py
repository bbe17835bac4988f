"""Every code block of README.md and docs/*.md runs as written (issue 22), or is listed here with the reason it cannot.

Each fenced block is found by its fence and named by its file and first line; `SPECS` must hold an entry for each
(`test_every_block_is_listed` fails on a new, renamed or removed block). An entry says how the block runs:

- Python blocks run with `exec`, the blocks of one file in one namespace and in file order, so a block may continue
  the one above it (as the README's L² block continues its drop-in block). A block that says its names come from
  "your script" gets them from its `context`, built below from a tiny model or SmolLM2.
- Bash blocks run command by command: each `slam ...` in-process through the console script's `main`, which must
  return 0. Commands that cannot run here are listed in `not_run` with the reason and reported as skipped.
- `subs` are the only edits made before running, each (text in the block, replacement, why); a substitution whose
  text is not in the block fails, so none silently stops applying. The reasons allowed: a model or data too large
  for a CPU test (a 7B model, all of MGSM), where ../shared/data lies (the docs are written for the repository
  root; the blocks run in a temporary folder), and CPU flags (`SFTConfig` defaults to bf16, which a CPU refuses).
- Blocks of one file run in one temporary working directory, so a command may read what an earlier one wrote
  (`slam annotate` → `slam l2-build` in docs/l2.md).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from slam_trainer.cli.main import main as slam
from tests.conftest import SHARED_DATA


REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", *sorted(str(path.relative_to(REPO)) for path in (REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
CPU = "use_cpu=True, bf16=False, report_to='none', "
CPU_WHY = "no GPU here: SFTConfig defaults to bf16, which a CPU refuses"


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    language: str
    code: str

    @property
    def first_line(self) -> str:
        return self.code.splitlines()[0]

    def spec_key(self) -> tuple[str, str] | None:
        """The SPECS key of this block: its document and the start of its first line."""
        keys = [key for key in SPECS if key[0] == self.document and self.first_line.startswith(key[1])]
        assert len(keys) <= 1, f"{self.document}:{self.line} matches several SPECS entries: {keys}"
        return keys[0] if keys else None


@dataclass(frozen=True)
class Spec:
    run: bool = True
    reason: str = ""  # why the whole block is not run
    subs: tuple = ()  # (text, replacement, why)
    context: str | None = None  # names the block takes from "your script"
    not_run: dict = field(default_factory=dict)  # command prefix -> reason
    slow: bool = False  # loads SmolLM2 or runs long: `slow` + `real_model`
    check: str | None = None  # a function of this module called after the block, with (namespace, workdir)
    append: tuple = ()  # (flags added to every `slam` command, why)


def extract_blocks() -> list[Block]:
    blocks = []
    for document in DOCUMENTS:
        text = (REPO / document).read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text[: match.start()].count("\n") + 1
            blocks.append(Block(document, line, match.group(1), match.group(2)))
    return blocks


MGSM = "../shared/data/mgsm/mgsm.jsonl"
SHARED_WHY = "the docs are run from the repository root; here from a temporary folder"
SLICE_WHY = "all of MGSM (250 questions x 11 languages) takes minutes per pass; 3 questions in 5 languages here"
SLICE_LANGUAGES = ("en", "de", "es", "zh", "sw")  # short in bytes: the tiny models' byte tokenizer, 1,024 positions
TINY_WHY = "a random tiny model of the same family stands in (a 7B model cannot load on this CPU)"

SPECS = {
    (
        "README.md",
        "make demo",
    ): Spec(
        run=False,
        reason="`make` builds a fresh .venv and installs the package (minutes, needs the package index); `make test` "
        "is this suite itself, and the demo's pipeline runs in tests/test_demo.py (tiny) and test_real_models.py",
    ),
    ("README.md", "from datasets import load_dataset"): Spec(
        subs=(
            ('"Qwen/Qwen2.5-7B-Instruct", dtype="bfloat16"', '"{tiny_qwen}", dtype="float32"', TINY_WHY),
            (
                'AutoTokenizer.from_pretrained("Qwen/Qwen2.5-7B-Instruct")',
                'AutoTokenizer.from_pretrained("{tiny_qwen}")',
                TINY_WHY,
            ),
            ('SelectiveFFNConfig(output_dir="out", ', f'SelectiveFFNConfig(output_dir="out", {CPU}', CPU_WHY),
            (
                "trainer.push_to_hub()",
                "pass  # trainer.push_to_hub()",
                "no Hub here; tests/test_hub.py checks what a push uploads",
            ),
        ),
        context="train_file",
        check="check_drop_in",
    ),
    ("README.md", "from trl import SFTConfig, SFTTrainer"): Spec(
        subs=(('SFTConfig(output_dir="out-l2", ', f'SFTConfig(output_dir="out-l2", {CPU}', CPU_WHY),),
        check="check_l2_drop_in",
    ),
    ("docs/distributed.md", "from transformers import AutoModelForCausalLM"): Spec(
        context="trained_trainer", check="check_delta_round_trip"
    ),
    (
        "docs/evaluation.md",
        "slam eval --model PATH_OR_HUB_ID",
    ): Spec(
        subs=(
            ("PATH_OR_HUB_ID", "{tiny_llama}", "a placeholder: a saved tiny model"),
            ("ADAPTER_DIR", "{adapter}", "a placeholder: a LoRA adapter of the tiny model"),
            ("--model BASE", "--model {tiny_llama}", "a placeholder: the tiny model the delta below was made on"),
            ("L2_MODEL", "{tagged}", "a placeholder: the tiny model with the L² tags added"),
            ("--model PATH ", "--model {tiny_llama} ", "a placeholder: a saved tiny model"),
            ("--data ...", f"--data {MGSM}", "a placeholder: the data of the first line"),
            ("../shared/data/msvamp/msvamp.jsonl", "{msvamp}", SLICE_WHY.replace("MGSM", "MSVAMP")),
            (MGSM, "{mgsm}", SLICE_WHY),
            ("../shared/data/mgsm/exemplars.jsonl", "{shared}/mgsm/exemplars.jsonl", SHARED_WHY),
            ("--num_shots 8", "--num_shots 1", "8 shots do not fit the tiny model's 1,024 positions"),
        ),
        append=("--max_new_tokens 8", "generation kept short (600 new tokens by default)"),
        context="eval_files",
    ),
    ("README.md", "from slam_trainer.loading import load_model_and_tokenizer"): Spec(slow=True),
    ("docs/l2.md", "SLAM: training up+down of layers [0, 1] of LlamaForCausalLM"): Spec(
        run=False, reason="printed output shown in the text, not code"
    ),
    ("docs/distributed.md", "accelerate launch --config_file recipes/accelerate/fsdp2.yaml"): Spec(
        run=False,
        reason="8 GPUs; the same launch with fsdp2.yaml runs on 2 CPU ranks in tests/test_real_models.py "
        "(marked distributed)",
    ),
    ("docs/slam.md", "import torch"): Spec(
        subs=(
            (
                'SelectiveFFNConfig(output_dir="out", ',
                'SelectiveFFNConfig(output_dir="out", use_cpu=True, report_to="none", ',
                "no GPU here (the block's own bf16=True is CPU autocast)",
            ),
        ),
        slow=True,
    ),
    ("docs/evaluation.md", "import evaluate"): Spec(
        subs=(
            ('model="out/"', 'model="{tiny_llama}"', "a placeholder: a saved model folder"),
            (MGSM, "{mgsm}", SLICE_WHY),
            ('languages=["en", "de"])', 'languages=["en", "de"], limit=1, max_new_tokens=4)', "generation kept short"),
        ),
        check="check_evaluation_api",
    ),
    (
        "docs/l2.md",
        '{"id": "7", "question"',
    ): Spec(check="check_parallel_schema"),
    ("docs/l2.md", "from trl import SFTConfig, SFTTrainer"): Spec(
        subs=(('SFTConfig(output_dir="out", ', f'SFTConfig(output_dir="out", {CPU}', CPU_WHY),),
        context="tiny_lm",
        check="check_l2_recipe",
    ),
    (
        "docs/l2.md",
        "OPENAI_API_KEY=... slam annotate",
    ): Spec(
        subs=(
            (
                "http://localhost:8000/v1",
                "{fake_endpoint}",
                "a loopback fake OpenAI-compatible server (tests/test_annotate.py)",
            ),
        ),
        not_run={
            "OPENAI_API_KEY=...": "sends the seed to OpenAI (a key and the network); the next line is the same "
            "command against a local server"
        },
        context="annotation_seed",
        slow=True,  # with the next block, which reads its output and trains SmolLM2 on it
    ),
    ("docs/l2.md", "slam l2-build"): Spec(
        subs=(
            (
                "data/L2-M_o1_4_6",
                "data/L2-M_o1_2_4",
                "the folder l2-build wrote from this test's seed (2 languages, 4)",
            ),
            ("--max_steps 20", "--max_steps 2 --per_device_train_batch_size 2", "training kept short"),
        ),
        slow=True,
        check="check_l2_build",
    ),
    ("docs/layer_identification.md", "from slam_trainer import identify_language_layers"): Spec(
        subs=((MGSM, "{mgsm}", SLICE_WHY),), context="tiny_lm", check="check_identify_api"
    ),
    (
        "docs/layer_identification.md",
        "slam identify --model PATH ",
    ): Spec(
        subs=(
            ("--model PATH ", "--model {tiny_llama} ", "a placeholder: a saved (tiny) model"),
            (MGSM, "{mgsm}", SLICE_WHY),
            ("flores.jsonl", "{mgsm}", "a placeholder: any parallel file (FLORES is not shipped); the MGSM slice"),
        ),
        slow=True,
    ),
    (
        "docs/layer_identification.md",
        "slam identify --model smollm2-135m-instruct",
    ): Spec(
        run=False,
        reason="the measurement the table above reports (all of MGSM, and the built-in corpus, on both real models: "
        "minutes each); the same commands run on an MGSM slice in the block before",
    ),
    ("docs/slam.md", "from transformers import Trainer"): Spec(
        subs=(('SelectiveFFNConfig(output_dir="out", ', f'SelectiveFFNConfig(output_dir="out", {CPU}', CPU_WHY),),
        context="smollm2_lm",
        slow=True,
        check="check_three_ways",
    ),
}


def _params():
    blocks = {block.spec_key(): block for block in extract_blocks()}
    for key, spec in SPECS.items():
        block = blocks.get(key)
        marks = [pytest.mark.slow, pytest.mark.real_model] if spec.slow else []
        yield pytest.param(block, spec, id=f"{key[0]}:{block.line if block else '?'}", marks=marks)


def test_every_block_is_listed():
    blocks = extract_blocks()
    keys = [block.spec_key() for block in blocks]
    assert len([k for k in keys if k]) == len({k for k in keys if k}), "two blocks match one SPECS entry"
    unlisted = [
        f"{block.document}:{block.line} {block.first_line!r}" for block, key in zip(blocks, keys) if key is None
    ]
    stale = [key for key in SPECS if key not in set(keys)]
    assert not unlisted, f"code blocks without an entry in SPECS: {unlisted}"
    assert not stale, f"SPECS entries whose block is gone (edited first line?): {stale}"
    for spec in SPECS.values():
        assert spec.run or spec.reason, "a block that is not run needs its reason"


# --- what the blocks need: the documents' working folders, files and contexts ---


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    return {document: tmp_path_factory.mktemp(Path(document).stem) for document in DOCUMENTS}


@pytest.fixture(scope="module")
def namespaces():
    return {document: {"__name__": "__docs__"} for document in DOCUMENTS}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Saved tiny models (Llama, 12 layers: `slam_num_layers=6` needs a lower half of 6) and the MGSM slice."""
    from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer

    root = tmp_path_factory.mktemp("models")
    tokenizer = build_tiny_tokenizer()
    paths = {}
    for name, family in (("tiny_llama", "llama"), ("tiny_qwen", "qwen2")):
        build_tiny_model(family, num_layers=12).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        paths[name] = str(root / name)
    return paths


def _slice(source: Path, target: Path, per_language: int) -> str:
    kept, seen = [], {}
    for line in source.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["lang"] in SLICE_LANGUAGES and seen.get(row["lang"], 0) < per_language:
            seen[row["lang"]] = seen.get(row["lang"], 0) + 1
            kept.append(line)
    target.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return str(target)


@pytest.fixture(scope="module")
def values(models, tmp_path_factory):
    """What the substitutions' `{name}`s stand for."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"third-party data not found at {SHARED_DATA}")
    root = tmp_path_factory.mktemp("data")
    return {
        **models,
        "shared": str(SHARED_DATA),
        "mgsm": _slice(SHARED_DATA / "mgsm" / "mgsm.jsonl", root / "mgsm.jsonl", 3),
        "msvamp": _slice(SHARED_DATA / "msvamp" / "msvamp.jsonl", root / "msvamp.jsonl", 3),
    }


def context_trained_trainer(values, workdir):
    from datasets import Dataset

    from slam_trainer import SelectiveFFNConfig, SelectiveFFNTrainer
    from slam_trainer.config import cpu_training_defaults
    from slam_trainer.tiny import build_tiny_tokenizer

    args = SelectiveFFNConfig(
        output_dir=str(workdir / "run"), slam_layers=[0, 1], max_steps=2, learning_rate=1e-2, **cpu_training_defaults()
    )
    data = Dataset.from_list([{"prompt": f"{a}+{a}=", "completion": f" {2 * a}"} for a in range(8)])
    trainer = SelectiveFFNTrainer(
        model=values["tiny_llama"], args=args, train_dataset=data, processing_class=build_tiny_tokenizer()
    )
    trainer.train()
    return {"trainer": trainer, "base": values["tiny_llama"]}


def context_tiny_lm(values, workdir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slam_trainer import synthetic_parallel_dataset

    model = AutoModelForCausalLM.from_pretrained(values["tiny_llama"])
    tokenizer = AutoTokenizer.from_pretrained(values["tiny_llama"])
    return {"model": model, "tokenizer": tokenizer, "parallel_dataset": synthetic_parallel_dataset(8)}


def context_smollm2_lm(values, workdir):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

    from slam_trainer.offline_models import resolve_model_path

    path = resolve_model_path("smollm2-135m-instruct")
    ds = Dataset.from_list([{"prompt": "2 + 3 =", "completion": " 5"}] * 8)
    return {
        "model": AutoModelForCausalLM.from_pretrained(path),
        "tokenizer": AutoTokenizer.from_pretrained(path),
        "ds": ds,
        "training_args": TrainingArguments(output_dir=str(workdir / "plain"), use_cpu=True, report_to="none"),
    }


def context_eval_files(values, workdir):
    """The adapter, the delta (in `out/ffn_delta`, where the block looks) and a model with the L² tags."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slam_trainer import add_language_tokens, freeze_except_ffn, save_ffn_delta

    base = AutoModelForCausalLM.from_pretrained(values["tiny_llama"])
    get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(workdir / "adapter")
    model = AutoModelForCausalLM.from_pretrained(values["tiny_llama"])
    freeze_except_ffn(model, layers=[0])
    save_ffn_delta(model, str(workdir / "out" / "ffn_delta"))
    tokenizer = AutoTokenizer.from_pretrained(values["tiny_llama"])
    add_language_tokens(tokenizer, model, list(SLICE_LANGUAGES))
    model.save_pretrained(workdir / "tagged")
    tokenizer.save_pretrained(workdir / "tagged")
    values.update(adapter=str(workdir / "adapter"), tagged=str(workdir / "tagged"))
    return {}


def context_train_file(values, workdir):
    rows = [{"prompt": f"What is {a} + {a}?", "completion": f" {2 * a}"} for a in range(8)]
    (workdir / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return {}


def context_annotation_seed(values, workdir):
    from tests.test_annotate import SEED, FakeEndpoint

    (workdir / "seed.jsonl").write_text("".join(json.dumps(row) + "\n" for row in SEED[:4]), encoding="utf-8")
    from collections import Counter

    fake = FakeEndpoint(Counter())
    values["fake_endpoint"] = fake.base_url
    return {"_fake": fake}


# --- after a block: what it promised, checked ---


def check_drop_in(namespace, workdir):
    trainer = namespace["trainer"]
    assert trainer.slam_layer_report is not None and len(trainer.slam_freeze_report.layers) == 6
    assert (workdir / "out" / "language_layers.json").is_file()


def check_l2_drop_in(namespace, workdir):
    assert namespace["trainer"].state.global_step > 0 and namespace["collator"].max_length == 1024


def check_delta_round_trip(namespace, workdir):
    import torch

    trained = namespace["trainer"].model.state_dict()
    assert all(torch.equal(tensor, trained[name]) for name, tensor in namespace["model"].state_dict().items())


def check_evaluation_api(namespace, workdir):
    assert (workdir / "eval" / "baseline" / "results.json").is_file()


def check_parallel_schema(namespace, workdir):
    from slam_trainer import synthetic_parallel_dataset

    example = namespace["_json"]
    assert set(example) == set(synthetic_parallel_dataset(1).column_names)


def check_l2_recipe(namespace, workdir):
    args = namespace["args"]
    assert args.remove_unused_columns is False and args.dataset_kwargs["skip_prepare_dataset"] is True
    assert namespace["collator"].max_length == 2048


def check_l2_build(namespace, workdir):
    from datasets import load_from_disk

    (folder,) = (workdir / "data").iterdir()
    assert folder.name == "L2-M_o1_2_4" and len(load_from_disk(str(folder))) == 4
    assert (workdir / "out" / "l2" / "model.safetensors").is_file()  # slam train read the folder


def check_identify_api(namespace, workdir):
    assert (workdir / "out" / "language_layers.png").is_file() and len(namespace["report"].chosen_layers) == 6


def check_three_ways(namespace, workdir):
    assert namespace["report"].layers == [0, 1, 2, 3, 4, 5]


# --- running a block ---


def _apply(block: Block, spec: Spec, values: dict) -> str:
    code = block.code
    for old, new, why in spec.subs:
        assert old in code, f"substitution ({why}) no longer applies: {old!r} is not in {block.document}:{block.line}"
        code = code.replace(old, new.format(**values))
    return code


def _commands(code: str) -> list[str]:
    """Shell lines, continuations joined, comments cut."""
    joined = re.sub(r"\\\n\s*", " ", code)
    commands = []
    for line in joined.splitlines():
        line = re.split(r"\s+#", line, maxsplit=1)[0].strip()
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def _run_bash(code: str, spec: Spec) -> list[str]:
    skipped = []
    for command in _commands(code):
        reason = next((why for prefix, why in spec.not_run.items() if command.startswith(prefix)), None)
        if reason is not None:
            skipped.append(f"{command[:60]}...: {reason}")
            continue
        argv = shlex.split(command) + (shlex.split(spec.append[0]) if spec.append else [])
        assert argv[0] == "slam", f"not a slam command and not listed in not_run: {command}"
        assert slam(argv[1:]) == 0, command
    return skipped


@pytest.mark.parametrize("block, spec", list(_params()))
def test_the_block_runs_as_written(block, spec, values, workdirs, namespaces, monkeypatch, capsys):
    if not spec.run:
        pytest.skip(f"listed as not run: {spec.reason}")
    workdir = workdirs[block.document]
    monkeypatch.chdir(workdir)
    namespace = namespaces[block.document]
    extra = {}
    if spec.context is not None:
        extra = globals()[f"context_{spec.context}"](values, workdir)
    code = _apply(block, spec, values)
    skipped = []
    try:
        if block.language == "python":
            namespace.update({k: v for k, v in extra.items() if not k.startswith("_")})
            exec(compile(code, f"{block.document}:{block.line}", "exec"), namespace)  # noqa: S102 - the docs' own code
        elif block.language == "json":
            namespace["_json"] = json.loads(code)
        else:
            skipped = _run_bash(code, spec)
    finally:
        if "_fake" in extra:
            extra["_fake"].close()
    if spec.check is not None:
        globals()[spec.check](namespace, workdir)
    if skipped:
        print("not run:", *skipped, sep="\n  ")
