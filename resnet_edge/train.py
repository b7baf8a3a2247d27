"""Train ResNet-18 on CIFAR-10 with one-cycle Nesterov SGD, entirely from in-memory uint8 tensors.

What it achieves: the whole training set lives on the device as one uint8
tensor; each step crops and flips a whole batch with tensor ops, normalizes it,
and runs the model under bf16 autocast with channels_last on CPUs that support
bf16 (AMP on CUDA). On a 2-core AVX-512-BF16 CPU that is about 185 img/s, so a
48,000-image epoch takes about 4.3 minutes; data preparation stays a few percent
of a step.

Every epoch ends with a validation pass, a line in ``RUN_DIR/metrics.jsonl``,
``RUN_DIR/last.pt`` and, when validation accuracy improves, ``RUN_DIR/best.pt``.
Checkpoints hold the model, optimizer, scheduler, grad scaler, epoch, every RNG
state (Python, numpy, torch, the data-order generator and each rank's
augmentation generator), the config, the normalization and the class names, so
``resume=True`` after a crash at any moment replays from the last completed
epoch. On the CPU with the same number of processes the resumed run ends with
bitwise the same weights as an uninterrupted one (CUDA kernels are not all
deterministic, so there it ends close, not identical).

Under ``torchrun`` the same function runs DistributedDataParallel: every rank
draws the same data order, takes its slice of each global batch (so the
learning-rate schedule does not depend on the number of processes), and rank 0
alone validates, logs and writes files.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnet_edge import distributed
from resnet_edge.augment import alternating_flips, cutout, flip, normalize_batch, random_crop, random_flip, to_nchw
from resnet_edge.checkpoint import TrainingState, load_checkpoint, save_checkpoint, training_payload, training_state_of
from resnet_edge.cifar10 import CLASS_NAMES, MEAN, STD
from resnet_edge.hardware import hardware_description
from resnet_edge.data import Split
from resnet_edge.distributed import Ranks
from resnet_edge.ema import WeightAverage
from resnet_edge.errors import ResnetEdgeError
from resnet_edge.metrics import classification_report
from resnet_edge.distill import DistillationLoss
from resnet_edge.model import ResNet18, Widths, count_parameters
from resnet_edge.run_folder import BEST, LAST, METRICS, write_metrics
from resnet_edge.torch_inference import autocast_context, torch_logits
from resnet_edge.train_config import TrainConfig, saved_config

CROP_PADDING = 4


@dataclass
class Student:
    """A run that starts from given weights at given widths and learns from a teacher (``resnet-edge prune``).

    ``weights`` are the pruned starting point (None on resume: they come from ``last.pt``);
    ``pruning`` is the record every checkpoint keeps of what the model was pruned from and how.
    """

    widths: Widths
    weights: dict[str, torch.Tensor] | None
    teacher: nn.Module
    temperature: float
    kd_weight: float
    pruning: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD


def resolve_device(device: str, ranks: Ranks | None = None) -> torch.device:
    """The torch device for ``device``; under torchrun on CUDA, this rank's GPU."""
    ranks = ranks or Ranks()
    if device not in ("auto", "cpu", "cuda"):
        raise ResnetEdgeError(f"unknown device {device!r}; expected auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ResnetEdgeError("--device cuda was requested but torch sees no CUDA device")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if ranks.local_rank >= torch.cuda.device_count():
        raise ResnetEdgeError(
            f"LOCAL_RANK {ranks.local_rank} but torch sees {torch.cuda.device_count()} CUDA device(s); "
            "start at most one process per GPU, or pass --device cpu"
        )
    torch.cuda.set_device(ranks.local_rank)
    return torch.device("cuda", ranks.local_rank)


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None means full fp32)."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else None
    if precision == "fp16" and device.type != "cuda":
        raise ResnetEdgeError("precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    if precision == "bf16" and device.type == "cpu" and not cpu_supports_bf16():
        raise ResnetEdgeError("this CPU has no native bf16 support; use --precision fp32")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def one_cycle(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """Learning-rate multiplier per step: linear warm-up to 1, then linear decay to 0."""
    warmup = max(1, round(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay conv and linear weights only; decaying BN scales and biases just hurts accuracy."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_generators(seed: int, rank: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """The data-order generator (the same on every rank) and this rank's augmentation generator.

    The order generator lives on the CPU whatever the device, so the data order
    does not depend on the hardware and a run can resume on another device type.
    """
    order = torch.Generator()
    order.manual_seed(seed)
    augment = torch.Generator(device=device)
    augment.manual_seed(int(np.random.SeedSequence([seed, rank]).generate_state(1)[0]))
    return order, augment


def rng_state(order: torch.Generator, augment_states: list[torch.Tensor]) -> dict[str, Any]:
    """Every RNG the run touches, as tensors and plain values (safe for weights_only loads)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "data_order": order.get_state(),
        "augment": augment_states,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], order: torch.Generator, augment: torch.Generator,
                      ranks: Ranks) -> str | None:
    """Restore every RNG; a note when augmentation cannot continue exactly (other ranks or device type)."""
    if "data_order" not in state or "augment" not in state:
        raise ResnetEdgeError("the checkpoint's RNG state has an older layout; it cannot be resumed exactly")
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    order.set_state(state["data_order"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if len(state["augment"]) != ranks.world_size:
        return (f"the saved run had {len(state['augment'])} processes, this one {ranks.world_size}: "
                "the data order continues exactly, augmentation draws do not")
    try:
        augment.set_state(state["augment"][ranks.rank])
    except RuntimeError:  # a CPU generator state does not fit a CUDA generator, and vice versa
        return "the saved run used another device type: the data order continues exactly, augmentation draws do not"
    return None


def _check_resumable(saved: dict[str, Any], config: TrainConfig, explicit: set[str]) -> TrainConfig:
    """The saved config, after refusing explicit options that would change the run."""
    saved = saved_config(saved["config"])
    for name in sorted(explicit):
        if getattr(config, name) != getattr(saved, name):
            raise ResnetEdgeError(
                f"--{name.replace('_', '-')} {getattr(config, name)} differs from the saved run's "
                f"{getattr(saved, name)}; --resume continues the saved configuration"
            )
    return saved


def uses_channels_last(device: torch.device, autocast_dtype: torch.dtype | None) -> bool:
    """channels_last pays off with oneDNN's bf16 kernels and on CUDA; fp32 on the CPU runs faster in NCHW."""
    return autocast_dtype is not None or device.type == "cuda"


def build_optimization(model: nn.Module, config: TrainConfig, total_steps: int, device: torch.device,
                       autocast_dtype: torch.dtype | None) -> tuple[torch.optim.SGD, Any, Any, nn.Module]:
    """Optimizer, one-cycle scheduler, grad scaler (active only for fp16) and loss of a run."""
    optimizer = torch.optim.SGD(
        parameter_groups(model, config.weight_decay), lr=config.lr, momentum=config.momentum, nesterov=True
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle(total_steps, config.warmup_fraction))
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    return optimizer, scheduler, scaler, criterion


def prepare_batch(images: torch.Tensor, index: torch.Tensor, generator: torch.Generator,
                  memory_format: torch.memory_format, mean: tuple[float, ...], std: tuple[float, ...],
                  flips: torch.Tensor | None = None, cutout_size: int = 0) -> torch.Tensor:
    """Gather, crop, flip, normalize and cut out one batch of uint8 NCHW images, in the model's memory format.

    ``flips`` says which images of the batch to mirror; None flips each with probability 1/2.
    """
    x = random_crop(images[index], CROP_PADDING, generator)
    x = random_flip(x, generator) if flips is None else flip(x, flips)
    x = normalize_batch(x, mean, std)
    if cutout_size:
        x = cutout(x, cutout_size, generator)
    return x.contiguous(memory_format=memory_format)


def flip_base(seed: int, n_train: int, device: torch.device) -> torch.Tensor:
    """The fixed random half of the training images mirrored in even epochs (see ``alternating_flips``)."""
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 0xF11B]).generate_state(1)[0]))
    return (torch.rand(n_train, generator=generator) < 0.5).to(device)


def train_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module,
               optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
               autocast_dtype: torch.dtype | None,
               teacher: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer and scheduler step; returns the (detached) loss and logits.

    With a ``teacher``, ``criterion`` also takes its logits on the same augmented batch.
    """
    with autocast_context(x.device, autocast_dtype):
        logits = net(x)
        if teacher is not None:
            with torch.no_grad():
                soft_targets = teacher(x)
    loss = criterion(logits.float(), y) if teacher is None else criterion(logits.float(), y, soft_targets.float())
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return loss.detach(), logits.detach()


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, disable=None if enabled else True, dynamic_ncols=True)


def train(
    config: TrainConfig,
    train_split: Split,
    val_split: Split,
    out_dir: str | Path,
    device: str = "auto",
    resume: bool = False,
    explicit_options: set[str] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    student: Student | None = None,
) -> dict[str, Any]:
    """Train (or resume) a run in ``out_dir``; return the last epoch's metrics record.

    With ``student``, the run fine-tunes those weights at those widths by distillation
    from its teacher instead of training a ResNet-18 from scratch.
    Under torchrun every rank calls this; rank 0 alone logs and writes.
    """
    ranks = distributed.ranks_from_environment()
    torch_device = resolve_device(device, ranks)
    started = distributed.start(ranks, torch_device)
    try:
        run_log = log if ranks.is_main else (lambda line: None)
        saved, config = _open_run(Path(out_dir), config, resume, explicit_options or set(), run_log)
        if saved is not None and saved.get("pruning") and student is None:
            raise ResnetEdgeError(f"{Path(out_dir) / LAST} is a pruning run; resume it with 'resnet-edge prune "
                                  f"{saved['pruning']['source']} --out {out_dir} --resume'")
        run = _Run(config, train_split, val_split, Path(out_dir), torch_device, ranks, run_log,
                   progress and ranks.is_main, saved, student)
        return run.fit()
    finally:
        distributed.stop(started)


def _open_run(out_dir: Path, config: TrainConfig, resume: bool, explicit: set[str],
              log: Callable[[str], None]) -> tuple[dict[str, Any] | None, TrainConfig]:
    """The saved ``last.pt`` to resume (or None for a new run) and the config the run goes on with."""
    last_path = out_dir / LAST
    if last_path.exists():
        if not resume:
            raise ResnetEdgeError(
                f"{out_dir} already holds a run ({LAST}); pass --resume to continue it or choose another --out"
            )
        saved = load_checkpoint(last_path)
        return saved, _check_resumable(saved, config, explicit)
    if resume:
        log(f"no {LAST} in {out_dir}: starting a new run")
    return None, config


class _Run:
    """One training run on this rank: its data on the device, model, optimization and RNGs, epoch by epoch.

    Built in the order the RNGs are drawn (seeds, generators, initial weights), so a fresh
    run and a resumed one see the same random numbers.
    """

    def __init__(self, config: TrainConfig, train_split: Split, val_split: Split, out_dir: Path,
                 device: torch.device, ranks: Ranks, log: Callable[[str], None], progress: bool,
                 saved: dict[str, Any] | None, student: Student | None = None) -> None:
        self.config, self.val_split, self.out_dir, self.device, self.ranks = config, val_split, out_dir, device, ranks
        self.log, self.progress, self.train_source, self.student = log, progress, train_split.source, student
        # The data set's normalization (a teacher's own, when distilling): applied to every batch and recorded.
        self.mean, self.std = (student.mean, student.std) if student is not None else (MEAN, STD)
        labels = train_split.labels[: config.limit_train]
        self.n_train = len(labels)
        self.batch_size = self._global_batch(saved)
        self.steps_per_epoch = self.n_train // self.batch_size  # drop the ragged last batch: tiny ones upset BN
        self.autocast_dtype = resolve_precision(config.precision, device)
        self.channels_last = uses_channels_last(device, self.autocast_dtype)
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format

        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.order_gen, self.augment_gen = make_generators(config.seed, ranks.rank, device)
        widths = student.widths if student is not None else None
        model = ResNet18(len(CLASS_NAMES), zero_init_residual=config.zero_init_residual, widths=widths)
        if student is not None and student.weights is not None:
            model.load_state_dict(student.weights)
        if config.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(device, memory_format=self.memory_format)
        self.optimizer, self.scheduler, self.scaler, self.criterion = build_optimization(
            self.model, config, self.steps_per_epoch * config.epochs, device, self.autocast_dtype)
        self.teacher = None
        if student is not None:
            self.teacher = student.teacher.to(device, memory_format=self.memory_format).eval().requires_grad_(False)
            self.criterion = DistillationLoss(student.temperature, student.kd_weight, config.label_smoothing)
        # Only rank 0 validates and writes, so only it keeps the average (every rank holds the same weights).
        self.ema = WeightAverage(self.model, config.ema_decay) if config.ema_decay and ranks.is_main else None
        self.flips = flip_base(config.seed, self.n_train, device) if config.alternate_flips else None
        self.start_epoch, self.history, self.best_top1 = 0, [], -1.0
        if saved is not None:
            self._restore(saved)
        self._host_data = train_split.images[: config.limit_train], labels  # on the device once training starts
        self.hardware = hardware_description(device)

    def _global_batch(self, saved: dict[str, Any] | None) -> int:
        """The global batch size, after refusing data or a device that would change the run."""
        saved_images = saved.get("train_data", {}).get("images") if saved is not None else None
        if saved_images is not None and saved_images != self.n_train:
            # Another split (or data set) would silently change the data order and the schedule's length.
            raise ResnetEdgeError(
                f"the run in {self.out_dir} trained on {saved_images} images, this data gives {self.n_train}; "
                "--resume needs the same training split"
            )
        batch_size = min(self.config.batch_size, self.n_train)
        if batch_size % self.ranks.world_size:
            raise ResnetEdgeError(
                f"the global batch of {batch_size} images must divide evenly over {self.ranks.world_size} processes"
            )
        if self.config.sync_bn and self.device.type != "cuda":
            raise ResnetEdgeError("--sync-bn needs CUDA devices (torch's SyncBatchNorm does not run on the CPU)")
        return batch_size

    def _restore(self, saved: dict[str, Any]) -> None:
        """Continue from a saved checkpoint: weights, average, optimizer, schedule, scaler and every RNG."""
        state = training_state_of(saved)
        self.model.load_state_dict(state.raw_weights if state.raw_weights is not None else saved["model"])
        if self.ema is not None:
            self.ema.load_state_dict(saved["model"], state.ema_updates)
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        self.scaler.load_state_dict(state.scaler)
        note = restore_rng_state(state.rng, self.order_gen, self.augment_gen, self.ranks)
        if note:
            self.log(note)
        self.start_epoch, self.history, self.best_top1 = saved["epoch"], list(saved["metrics"]), saved["best_val_top1"]

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs; the last epoch's record on every rank."""
        config, ranks = self.config, self.ranks
        if self.start_epoch:
            if ranks.is_main:
                write_metrics(self.out_dir / METRICS, self.history)  # drop lines of an epoch that died unsaved
            if self.start_epoch >= config.epochs:
                self.log(f"run in {self.out_dir} is already complete ({self.start_epoch}/{config.epochs} epochs)")
                return self.history[-1]
            self.log(f"resuming {self.out_dir} at epoch {self.start_epoch + 1}/{config.epochs}")
        starts = distributed.all_gather(ranks, self.start_epoch)
        if len(set(starts)) != 1:
            raise ResnetEdgeError(
                f"processes would start at different epochs {starts}: the run folder {self.out_dir} must be on "
                "storage that every node reads"
            )
        images, labels = self._host_data
        self.images = to_nchw(torch.from_numpy(images)).to(self.device)
        self.labels = torch.from_numpy(labels).to(self.device)
        net: nn.Module = self.model
        if ranks.enabled:
            net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self._log_start()
        if ranks.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {}
        for epoch in range(self.start_epoch, config.epochs):
            started = time.perf_counter()
            totals = self._train_epoch(net, epoch)
            distributed.all_reduce_sum(ranks, totals)
            distributed.sync_buffers(ranks, self.model)
            train_seconds = time.perf_counter() - started
            digest = distributed.check_in_sync(ranks, self.model) if ranks.enabled else None
            augment_states = distributed.all_gather(ranks, self.augment_gen.get_state())
            if ranks.is_main:
                record = self._end_epoch(epoch, totals, train_seconds, started, augment_states)
                if digest is not None:
                    self.log(f"weights identical on all {ranks.world_size} processes (sha256 {digest[:16]})")
            distributed.barrier(ranks)
        return distributed.broadcast(ranks, record)

    def _log_start(self) -> None:
        config, ranks = self.config, self.ranks
        precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]
        processes = f" × {ranks.world_size} processes" if ranks.enabled else ""
        what = "training ResNet-18"
        if self.student is not None:
            what = (f"fine-tuning the pruned ResNet-18 ({count_parameters(self.model):,} parameters) by distillation "
                    f"(T={self.student.temperature:g}, soft-target weight {self.student.kd_weight:g})")
        self.log(
            f"{what} on {self.n_train} images ({self.train_source}), validating on "
            f"{len(self.val_split)}; {config.epochs} epochs × {self.steps_per_epoch} steps of {self.batch_size}, "
            f"device {self.device.type}{processes}, {precision}{' + channels_last' if self.channels_last else ''}"
        )

    def _train_epoch(self, net: nn.Module, epoch: int) -> torch.Tensor:
        """One pass over the shuffled training images; the sums of loss, correct answers and images."""
        net.train()
        started = time.perf_counter()
        totals = torch.zeros(3, device=self.device, dtype=torch.float64)  # loss sum, correct, images
        order = torch.randperm(self.n_train, generator=self.order_gen).to(self.device)
        epoch_flips = None if self.flips is None else alternating_flips(self.flips, epoch)
        bar = _progress(self.steps_per_epoch, f"epoch {epoch + 1}/{self.config.epochs}", self.progress)
        for step in range(self.steps_per_epoch):
            index = order[step * self.batch_size : (step + 1) * self.batch_size][self.ranks.rank :: self.ranks.world_size]
            x = prepare_batch(self.images, index, self.augment_gen, self.memory_format, self.mean, self.std,
                              None if epoch_flips is None else epoch_flips[index], self.config.cutout)
            y = self.labels[index]
            loss, logits = train_step(net, x, y, self.criterion, self.optimizer, self.scheduler, self.scaler,
                                      self.autocast_dtype, self.teacher)
            if self.ema is not None:
                self.ema.update(self.model)
            totals[0] += loss * len(y)
            totals[1] += (logits.argmax(1) == y).sum()
            totals[2] += len(y)
            bar.update(1)
            if self.progress and (step % 10 == 0 or step == self.steps_per_epoch - 1):
                seen = totals[2].item()
                bar.set_postfix(loss=f"{totals[0].item() / seen:.3f}", acc=f"{totals[1].item() / seen:.3f}",
                                img_s=f"{seen * self.ranks.world_size / (time.perf_counter() - started):.0f}")
        bar.close()
        return totals

    def _validate(self, model: nn.Module) -> tuple[float, float]:
        """Cross-entropy and top-1 of ``model`` on the validation split."""
        logits = torch_logits(model, self.val_split.images, self.mean, self.std,
                              autocast_dtype=self.autocast_dtype, channels_last=self.channels_last)
        loss = float(nn.functional.cross_entropy(logits, torch.from_numpy(self.val_split.labels)))
        return loss, classification_report(logits.numpy(), self.val_split.labels, CLASS_NAMES)["top1"]

    def _end_epoch(self, epoch: int, totals: torch.Tensor, train_seconds: float, started: float,
                   augment_states: list[torch.Tensor]) -> dict[str, Any]:
        """Rank 0: validate the weights that ship, record the epoch, write the checkpoints and log a line."""
        shipped = self.ema.module if self.ema is not None else self.model
        val_loss, val_top1 = self._validate(shipped)
        loss_sum, correct, seen = totals.tolist()
        record = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], "train_loss": loss_sum / seen,
                  "train_acc": correct / seen, "val_loss": val_loss, "val_acc": val_top1,
                  "img_per_s": seen / train_seconds, "seconds": 0.0}  # set below; its place keeps the key order
        if self.ema is not None:
            record["val_acc_raw"] = self._validate(self.model)[1]
        record["seconds"] = time.perf_counter() - started
        self.history.append(record)
        is_best = val_top1 > self.best_top1
        self.best_top1 = max(self.best_top1, val_top1)
        payload = self._checkpoint(epoch + 1, val_top1, augment_states)
        # best.pt before last.pt: a crash between the two re-runs this epoch on resume and rewrites both.
        if is_best:
            save_checkpoint(self.out_dir / BEST, payload)
        save_checkpoint(self.out_dir / LAST, payload)
        write_metrics(self.out_dir / METRICS, self.history)
        raw = f"(raw weights {record['val_acc_raw']:.4f})  " if self.ema is not None else ""
        self.log(
            f"epoch {epoch + 1:>3}/{self.config.epochs}  lr {record['lr']:.4f}  "
            f"train loss {record['train_loss']:.3f} acc {record['train_acc']:.3f}  "
            f"val loss {val_loss:.3f} acc {val_top1:.4f}{' *' if is_best else ''}  "
            f"{raw}{record['img_per_s']:.0f} img/s  {record['seconds']:.0f}s"
        )
        return record

    def _checkpoint(self, epoch: int, val_top1: float, augment_states: list[torch.Tensor]) -> dict[str, Any]:
        """The checkpoint after ``epoch`` epochs: the weights that ship (the average, when kept) and the resume state."""
        raw_weights = {name: t.detach().cpu() for name, t in self.model.state_dict().items()}
        state = TrainingState(
            optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(), rng=rng_state(self.order_gen, augment_states),
            raw_weights=raw_weights if self.ema is not None else None,
            ema_updates=self.ema.updates if self.ema is not None else None,
        )
        return training_payload(
            weights=self.ema.state_dict() if self.ema is not None else raw_weights, state=state, epoch=epoch,
            config=asdict(self.config), mean=self.mean, std=self.std, class_names=CLASS_NAMES,
            val_top1=val_top1, best_val_top1=self.best_top1, metrics=self.history,
            train_data={"source": self.train_source, "images": self.n_train, "val_images": len(self.val_split)},
            world_size=self.ranks.world_size, hardware=self.hardware, device=self.device.type,
            widths=None if self.student is None else self.student.widths.to_dict(),
            pruning=None if self.student is None else self.student.pruning,
        )
