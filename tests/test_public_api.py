"""The public names of DESIGN.md are importable from the package root, which stays cheap to import."""

import subprocess
import sys
from pathlib import Path

import slam_trainer


ROOT = Path(__file__).resolve().parents[1]
DESIGN_NAMES = [
    "L2DataCollator",
    "LanguageSwitchLogitsProcessor",
    "SelectiveFFNCallback",
    "SelectiveFFNConfig",
    "SelectiveFFNTrainer",
    "freeze_except_ffn",
    "identify_language_layers",
    "load_ffn_delta",
    "save_ffn_delta",
]


def test_design_names_are_exported():
    assert set(DESIGN_NAMES) <= set(slam_trainer.__all__)


def test_all_is_sorted_and_every_name_resolves_to_its_module_s_object():
    import importlib

    assert slam_trainer.__all__ == sorted(slam_trainer.__all__)
    assert set(slam_trainer.__all__) == set(slam_trainer._EXPORTS) | {"__version__"}
    for name, module in slam_trainer._EXPORTS.items():
        assert getattr(slam_trainer, name) is getattr(importlib.import_module(module), name), name
    assert set(slam_trainer.__all__) <= set(dir(slam_trainer))


def test_importing_the_package_loads_no_heavy_library():
    # `import slam_trainer` (and so `slam --help`) must not pay for torch, transformers or TRL up front.
    code = (
        "import sys, slam_trainer; "
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'datasets', 'peft') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    missing = subprocess.run(
        [sys.executable, "-c", "import slam_trainer; slam_trainer.NoSuchName"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert "module 'slam_trainer' has no attribute 'NoSuchName'" in missing.stderr
