"""Run `slam train` and SIGKILL the process while it saves a checkpoint (a helper of tests/test_checkpoints.py).

Usage:
    python tests/scripts/train_killed_in_checkpoint.py STEP -- SLAM_TRAIN_ARGUMENTS...

The kill comes when `Trainer` writes `checkpoint-STEP/optimizer.pt`: the model weights are written, the optimizer,
scheduler, RNG and trainer states are not, as after a kill during a real save. The kill is real; only its moment is
chosen.
"""

import os
import signal
import sys

import torch

from slam_trainer.cli.main import main


def main_killed(step: int, argv: list[str]) -> int:
    save = torch.save

    def save_or_die(obj, f, *args, **kwargs):
        if str(f).endswith(os.path.join(f"checkpoint-{step}", "optimizer.pt")):
            os.kill(os.getpid(), signal.SIGKILL)
        return save(obj, f, *args, **kwargs)

    torch.save = save_or_die
    return main(["train", *argv])


if __name__ == "__main__":
    separator = sys.argv.index("--")
    sys.exit(main_killed(int(sys.argv[1]), sys.argv[separator + 1 :]))
