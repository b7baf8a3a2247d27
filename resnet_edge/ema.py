"""An exponential moving average of a model's weights, the copy that is validated, kept and exported.

Averaging the last few hundred steps' weights smooths out the noise of the final
SGD steps; the averaged copy usually generalizes a little better than the last
weights. BatchNorm running statistics are averaged with the weights, so the
copy is self-consistent and needs no extra pass over the data.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


class WeightAverage:
    """``average ← decay·average + (1 − decay)·weights`` after every optimizer step.

    The decay ramps up as ``min(decay, (1 + t) / (10 + t))`` over the first steps
    (t = updates so far), so the random initial weights are forgotten quickly.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay!r}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        averaged, current = self._floats(self.module), self._floats(model)
        torch._foreach_lerp_(averaged, current, 1.0 - decay)
        for mine, theirs in zip(self.module.buffers(), model.buffers()):
            if not mine.is_floating_point():  # BatchNorm's num_batches_tracked
                mine.copy_(theirs)

    def state_dict(self) -> dict[str, Tensor]:
        return {name: t.detach().cpu() for name, t in self.module.state_dict().items()}

    def load_state_dict(self, state: dict[str, Tensor], updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = updates

    @staticmethod
    def _floats(model: nn.Module) -> list[Tensor]:
        return [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
