"""Knowledge distillation: the loss a pruned student learns from its unpruned teacher with (Hinton et al., 2015).

``loss = kd_weight · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − kd_weight) · CE(student, labels)``

The temperature T softens both distributions so the student also learns how the
teacher ranks the wrong classes; the T² factor keeps the soft term's gradients
the same size whatever T is, so ``kd_weight`` means the same at every
temperature. The label term uses the trainer's label smoothing.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F


class DistillationLoss(nn.Module):
    """Soft-target KL at ``temperature`` (times T²) weighted by ``kd_weight``, plus the label loss."""

    def __init__(self, temperature: float = 4.0, kd_weight: float = 0.9, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"the distillation temperature must be positive, got {temperature}")
        if not 0 <= kd_weight <= 1:
            raise ValueError(f"the distillation weight must be in [0, 1], got {kd_weight}")
        self.temperature, self.kd_weight = temperature, kd_weight
        self.label_loss = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(self, logits: Tensor, labels: Tensor, teacher_logits: Tensor) -> Tensor:
        t = self.temperature
        soft = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logits.float() / t, dim=1),
                        reduction="batchmean", log_target=True)
        return self.kd_weight * t * t * soft + (1 - self.kd_weight) * self.label_loss(logits, labels)

