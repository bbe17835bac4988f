"""One seed per example, the same in every process: what makes an example's random draws independent of the batch,
the worker, the sort order and a resume.

`L2DataCollator` seeds each example's language draw with `example_seed(seed, epoch, id)`; `slam eval` seeds each
row's sampling with `example_seed(seed, lang, id)`.
"""

from __future__ import annotations

import hashlib


# Names the hash below; a run that records it (a sampled `slam eval`) refuses to resume under another one.
SCHEME = "blake2b-64"


def example_seed(*parts) -> int:
    """A 64-bit seed for one example from `parts` (e.g. the run's seed, the epoch and the example's id), stable across
    processes, machines and Python versions: BLAKE2b of the parts written as text and joined by `:` (Python's own
    `hash` of a str changes with every process). Only the last part may hold a `:` without risking a collision."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")
