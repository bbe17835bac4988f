"""Sampling seeded per example, so that a row's draws do not depend on the rows that share its batch.

`generate(do_sample=True)` draws every row of a batch from one global generator: the same question sampled in another
batch (a resumed run, another `batch_size`, another sort) draws differently. `PerExampleSampler` makes the draw
itself: each row has its own `torch.Generator` seeded from the example (`slam_trainer.seeding.example_seed`), the
row's scores are warped by temperature and top-p as `generate` would, one token is drawn by inverse CDF from one
uniform of the row's generator, and every other token is set to -inf, so that greedy decoding then takes the drawn
token.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from slam_trainer.errors import ConfigError


class PerExampleSampler(LogitsProcessor):
    r"""
    [`LogitsProcessor`] that samples each row's next token from the row's own seeded generator (use with greedy
    decoding, as the last processor).

    Parameters:
        seeds (`list[int]`):
            One seed per row of the batch (see `slam_trainer.seeding.example_seed`).
        temperature (`float`, *optional*, defaults to `1.0`):
            Softmax temperature, as `TemperatureLogitsWarper`.
        top_p (`float`, *optional*, defaults to `1.0`):
            Nucleus mass, as `TopPLogitsWarper`.
    """

    def __init__(self, seeds: list[int], temperature: float = 1.0, top_p: float = 1.0):
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        warpers = []
        if temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(temperature))
        if top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p))
        self.warpers = LogitsProcessorList(warpers)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.generators):
            raise ConfigError(f"`PerExampleSampler` has {len(self.generators)} seeds for {scores.shape[0]} rows.")
        probabilities = self.warpers(input_ids, scores).float().softmax(-1)
        uniforms = torch.cat([torch.rand(1, generator=generator) for generator in self.generators])
        cdf = probabilities.cumsum(-1)
        drawn = (cdf < uniforms.to(cdf.device)[:, None] * cdf[:, -1:]).sum(-1).clamp(max=scores.shape[-1] - 1)
        return torch.full_like(scores, -float("inf")).scatter(1, drawn[:, None], 0.0)
