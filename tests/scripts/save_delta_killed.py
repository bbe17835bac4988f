"""Save an FFN delta and SIGKILL this process in the middle of the save (a helper of tests/test_delta.py).

Usage:
    python tests/scripts/save_delta_killed.py DELTA_DIR during_weights   # killed with the weights file half written
    python tests/scripts/save_delta_killed.py DELTA_DIR between_files    # killed after the weights, before the JSON

The model is `trained_tiny_llama(2.0)` below; the kill is real (SIGKILL), only its moment is chosen.
"""

import os
import signal
import sys

import torch

import slam_trainer.delta as delta
from slam_trainer.freezing import freeze_except_ffn
from slam_trainer.tiny import build_tiny_model


def trained_tiny_llama(shift: float):
    """The tiny Llama with layer 0's up/down trainable and up_proj moved by `shift`, as training would move it."""
    model = build_tiny_model("llama")
    freeze_except_ffn(model, [0], ["up", "down"])
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight += shift
    return model


def main() -> None:
    path, moment = sys.argv[1], sys.argv[2]
    if moment == "during_weights":
        save_file = delta.save_file

        def torn_save_file(tensors, filename, metadata=None):
            save_file(tensors, filename, metadata=metadata)
            with open(filename, "r+b") as handle:
                handle.truncate(os.path.getsize(filename) // 2)
            os.kill(os.getpid(), signal.SIGKILL)

        delta.save_file = torn_save_file
    elif moment == "between_files":
        replace, renamed = os.replace, []

        def replace_then_die(source, target):
            if renamed:  # the second rename: the JSON's
                os.kill(os.getpid(), signal.SIGKILL)
            renamed.append(target)
            replace(source, target)

        os.replace = replace_then_die
    else:
        raise SystemExit(f"unknown moment {moment!r}")
    delta.save_ffn_delta(trained_tiny_llama(2.0), path)
    raise SystemExit("the save finished: the kill did not happen")


if __name__ == "__main__":
    main()
