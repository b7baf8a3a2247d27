"""Training report of a run folder: loss, accuracy and learning-rate charts, a confusion matrix and summary.md.

``write_report`` turns what ``resnet-edge train`` leaves in a run folder
(``metrics.jsonl`` and ``best.pt``) into a folder (``RUN_DIR/report/`` by default)
that can be attached to a pull request or browsed on GitHub as it is:

- ``loss.png``, ``accuracy.png``: train and validation curves per epoch, the epoch of ``best.pt`` marked;
- ``lr.png``: the one-cycle learning rate at the end of each epoch;
- ``confusion.png``: ``best.pt`` on the validation split, counts in the cells, coloured by share of the true class;
- ``summary.md``: epochs, best and final accuracy, wall time, throughput, config, torch and hardware, and the
  charts embedded by relative path.

Charts are drawn on matplotlib ``Figure`` objects without pyplot (``resnet_edge.figures``), so they render
headless and leave a notebook's backend alone. Everything is
rendered in memory first and then written atomically, summary.md last, so a failure writes nothing and
summary.md never links a chart that is not there. A report of a 30-epoch run takes a few seconds; the
confusion matrix adds one fp32 pass over the validation images (about 8 s for the 2,000 on 2 cores).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resnet_edge.data import Split
from resnet_edge.extras import require
from resnet_edge.figures import new_figure, png_bytes
from resnet_edge.files import atomic_write_bytes
from resnet_edge.metrics import classification_report
from resnet_edge.run_folder import TrainingRun

REPORT_DIR = "report"
LOSS_PNG, ACCURACY_PNG, LR_PNG, CONFUSION_PNG, SUMMARY_MD = (
    "loss.png", "accuracy.png", "lr.png", "confusion.png", "summary.md",
)

@dataclass(frozen=True)
class Confusion:
    """Counts of ``best.pt``'s predictions: rows are the true class, columns the predicted one."""

    counts: np.ndarray
    class_names: tuple[str, ...]
    top1: float
    source: str

    @property
    def images(self) -> int:
        return int(self.counts.sum())


@dataclass(frozen=True)
class Report:
    """What ``write_report`` wrote, in writing order (summary.md last)."""

    out_dir: Path
    files: list[Path]
    confusion: Confusion | None


def confusion_of_best(run: TrainingRun, val_split: Split, batch_size: int = 500) -> Confusion:
    """``best.pt`` in fp32 on ``val_split``: the reference numbers, whatever precision training used."""
    from resnet_edge.checkpoint import class_names_of, model_from_checkpoint, normalization_of
    from resnet_edge.torch_inference import torch_logits

    mean, std = normalization_of(run.best)
    logits = torch_logits(model_from_checkpoint(run.best), val_split.images, mean, std, batch_size=batch_size)
    return confusion_from_logits(logits.numpy(), val_split, class_names_of(run.best))


def confusion_from_logits(logits: np.ndarray, split: Split, class_names: Sequence[str]) -> Confusion:
    """The confusion matrix of ``logits`` against ``split``'s labels (rows: true class, columns: predicted)."""
    report = classification_report(logits, split.labels, class_names)
    return Confusion(np.asarray(report["confusion"], dtype=np.int64), tuple(class_names), report["top1"],
                     split.source)


def curves_png(metrics: Sequence[dict[str, Any]], series: Sequence[tuple[str, str]], ylabel: str, title: str,
               best_epoch: int | None = None, percent: bool = False) -> bytes:
    """One line per ``(key, label)`` in ``series`` against the epoch, as PNG bytes."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    figure = new_figure(6.4, 4.0)
    axes = figure.add_subplot()
    epochs = [record["epoch"] for record in metrics]
    for key, label in series:
        # Markers, so that a run of one or two epochs still shows its points.
        axes.plot(epochs, [record[key] for record in metrics], marker="o", markersize=3, label=label)
    if best_epoch is not None:
        axes.axvline(best_epoch, color="grey", linestyle=":", linewidth=1, label=f"best.pt (epoch {best_epoch})")
    axes.set(xlabel="epoch", ylabel=ylabel, title=title)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if percent:
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.grid(alpha=0.3)
    if len(series) > 1 or best_epoch is not None:
        axes.legend()
    return png_bytes(figure)


def confusion_png(confusion: Confusion) -> bytes:
    """Counts in the cells; colour is the share of the row, so rare and common classes read alike."""
    from matplotlib.ticker import PercentFormatter

    counts = confusion.counts
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    names = confusion.class_names
    figure = new_figure(7.5, 6.5)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, format=PercentFormatter(1.0), label="share of the true class (row)")
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), names)
    axes.set(xlabel="predicted class", ylabel="true class",
             title=f"best.pt on {confusion.images} val images: top-1 {confusion.top1:.2%}")
    for (row, column), count in np.ndenumerate(counts):
        axes.text(column, row, str(count), ha="center", va="center", fontsize=8,
                  color="white" if shares[row, column] > 0.5 else "black")
    return png_bytes(figure)


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = int(round(seconds)) // 60
    if minutes < 60:
        return f"{minutes} min {int(round(seconds)) % 60} s"
    return f"{minutes // 60} h {minutes % 60} min"


def _cell(value: Any) -> str:
    text = "-" if value is None else str(value)
    return text.replace("|", "\\|")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def _epochs_text(run: TrainingRun) -> str:
    text = f"{run.epochs_done} / {run.epochs_planned}"
    if run.epochs_done < run.epochs_planned:
        text += " (not finished: still running, or stopped; `resnet-edge train --resume` continues it)"
    return text


def summary_markdown(run: TrainingRun, confusion: Confusion | None) -> str:
    """summary.md: the run in a few rows, its config, and the charts by relative path."""
    best, final = run.best, run.metrics[-1]
    data = best.get("train_data", {})
    device = str(best.get("device", "-"))
    if best.get("world_size", 1) > 1:
        device += f" × {best['world_size']} processes"
    rows = [
        ("epochs done / planned", _epochs_text(run)),
        ("best val top-1", f"{best['val_top1']:.2%} at epoch {best['epoch']} (best.pt)"),
        ("final epoch, train", f"loss {final['train_loss']:.3f}, accuracy {final['train_acc']:.2%}"),
        ("final epoch, val", f"loss {final['val_loss']:.3f}, top-1 {final['val_acc']:.2%}"),
        ("wall time", f"{format_duration(run.wall_seconds)} (sum of epoch times: training + validation)"),
        ("training throughput", f"{run.mean_img_per_s:.0f} img/s (mean over epochs)"),
        ("data", f"{data.get('images', '-')} train / {data.get('val_images', '-')} val images "
                 f"from {data.get('source', '-')}"),
        ("torch", best.get("torch_version", "-")),
        ("resnet-edge", best.get("toolkit_version", "-")),
        ("hardware", best.get("hardware", "-")),
        ("device", device),
    ]
    lines = [f"# Training report: {run.path}", "", *_table(["", ""], rows), ""]
    lines += ["## Config", "", *_table(["option", "value"], sorted(best["config"].items())), ""]
    # Why train loss sits above val loss: it is label-smoothed and measured on augmented batches.
    lines += [
        "## Curves", "",
        "Train loss and accuracy are measured on the augmented batches during each epoch, with label "
        f"smoothing {best['config'].get('label_smoothing', '-')}; validation uses plain images and plain "
        "cross-entropy, so train loss can sit above val loss.", "",
        f"![loss per epoch]({LOSS_PNG})", "",
        f"![accuracy per epoch]({ACCURACY_PNG})", "",
        f"![learning rate per epoch]({LR_PNG})", "",
        "## Confusion matrix", "",
    ]
    if confusion is None:
        lines += ["Not computed for this report.", ""]
    else:
        lines += [
            f"best.pt (fp32) on {confusion.images} val images from {confusion.source}: top-1 {confusion.top1:.2%}. "
            "Rows are the true class, columns the predicted one; colour is the share of the row.", "",
            f"![confusion matrix]({CONFUSION_PNG})", "",
        ]
    return "\n".join(lines)


def headline(run: TrainingRun, confusion: Confusion | None) -> list[str]:
    """The report in three lines, for the terminal."""
    best, final = run.best, run.metrics[-1]
    lines = [
        f"{run.path}: {run.epochs_done}/{run.epochs_planned} epochs in {format_duration(run.wall_seconds)}, "
        f"{run.mean_img_per_s:.0f} img/s",
        f"best val top-1 {best['val_top1']:.2%} at epoch {best['epoch']} (best.pt); "
        f"final epoch: train accuracy {final['train_acc']:.2%}, val top-1 {final['val_acc']:.2%}",
    ]
    if confusion is not None:
        lines.append(f"confusion matrix: best.pt on {confusion.images} val images from {confusion.source}, "
                     f"top-1 {confusion.top1:.2%}")
    return lines


def write_report(run: TrainingRun, out_dir: str | Path | None = None, val_split: Split | None = None) -> Report:
    """Write the charts and summary.md of ``run`` into ``out_dir`` (default ``RUN_DIR/report``).

    ``val_split`` is what the confusion matrix is computed on; ``None`` skips it.
    """
    require("matplotlib", "report", "resnet-edge report")
    out_dir = Path(out_dir) if out_dir is not None else run.path / REPORT_DIR
    best_epoch = int(run.best["epoch"])
    # best.pt can be one epoch ahead of metrics.jsonl while training writes them; only mark epochs on the chart.
    marked = best_epoch if best_epoch <= run.epochs_done else None
    smoothing = run.best["config"].get("label_smoothing")
    train_label = "train (augmented" + (f", label smoothing {smoothing})" if smoothing else ")")
    files = {
        LOSS_PNG: curves_png(run.metrics, [("train_loss", train_label), ("val_loss", "val")], "loss",
                             "Loss per epoch", marked),
        ACCURACY_PNG: curves_png(run.metrics, [("train_acc", "train (augmented)"), ("val_acc", "val top-1")],
                                 "accuracy", "Accuracy per epoch", marked, percent=True),
        LR_PNG: curves_png(run.metrics, [("lr", "learning rate")], "learning rate",
                           "Learning rate at the end of each epoch"),
    }
    confusion = confusion_of_best(run, val_split) if val_split is not None else None
    if confusion is not None:
        files[CONFUSION_PNG] = confusion_png(confusion)
    files[SUMMARY_MD] = summary_markdown(run, confusion).encode()
    written = []
    for name, data in files.items():
        atomic_write_bytes(out_dir / name, data)
        written.append(out_dir / name)
    return Report(out_dir, written, confusion)
