"""The public names of DESIGN.md are importable from the package root, and `__all__` is sorted and complete."""

import slam_trainer


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


def test_all_is_sorted_and_every_name_exists():
    assert slam_trainer.__all__ == sorted(slam_trainer.__all__)
    assert all(hasattr(slam_trainer, name) for name in slam_trainer.__all__)
