"""The `slam` command under `accelerate launch` on the CPU test machine: the gloo fix of `cpu_deepspeed`, then the
package's own entry point, unchanged, and an exit past gloo's teardown abort.

    accelerate launch --config_file recipes/accelerate/zero3.yaml --num_processes 2 \\
        tests/distributed_scripts/slam_cli.py train --config recipes/slam_tiny_cpu.yaml ...
"""

import cpu_deepspeed  # noqa: F401  (first: see its docstring)
import cpu_fsdp  # noqa: F401  (likewise)
from exit_without_teardown import exit_without_teardown

from slam_trainer.cli.main import main


if __name__ == "__main__":
    exit_without_teardown(main())  # `slam train` has saved everything and destroyed the process group
