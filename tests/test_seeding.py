"""`example_seed`: one seed per example, the same in every process (what the L² collator's draws and `slam eval`'s
per-row sampling rely on)."""

import os
import subprocess
import sys
from pathlib import Path

from slam_trainer.seeding import example_seed


ROOT = Path(__file__).resolve().parents[1]
# Computed once (BLAKE2b-64 of "42:0:gsm-7" and "0:zh:17"): a change here changes every L² draw and sampled output.
KNOWN = {(42, 0, "gsm-7"): 7578983996889442835, (0, "zh", 17): 4143774565265285512}


def test_example_seed_is_a_fixed_64_bit_value():
    for parts, value in KNOWN.items():
        assert example_seed(*parts) == value
    assert all(0 <= example_seed(seed, 0, "x") < 2**64 for seed in range(100))
    # every part counts, and an id's type does not (a `datasets` column may read 7 or "7")
    assert (
        len({example_seed(42, 0, "a"), example_seed(43, 0, "a"), example_seed(42, 1, "a"), example_seed(42, 0, "b")})
        == 4
    )
    assert example_seed(42, 0, 7) == example_seed(42, 0, "7")


def test_example_seed_is_the_same_in_another_process():
    """Python salts `hash(str)` per process (PYTHONHASHSEED); the seed must not depend on it."""
    code = (
        "from slam_trainer.seeding import example_seed; print(example_seed(42, 0, 'gsm-7'), example_seed(0, 'zh', 17))"
    )
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": hash_seed}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert result.stdout.split() == [str(value) for value in KNOWN.values()]
