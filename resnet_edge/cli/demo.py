"""``resnet-edge demo``: the whole pipeline with the shipped reference model and the built-in sample, in under a minute."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from resnet_edge.cli.table import format_table
from resnet_edge.data import DATA_ENV_VAR, Split, default_data_dir, load_sample, load_split
from resnet_edge.extras import require
from resnet_edge.reference import PRUNED_REFERENCE, REFERENCE_CARD, REFERENCE_CHECKPOINT, reference, reference_card
from resnet_edge.run_folder import BEST, LAST, METRICS
from resnet_edge.train_config import TrainConfig

if TYPE_CHECKING:
    from resnet_edge.runtime import Predictor

DEMO_CONFIG = TrainConfig(epochs=10, batch_size=100, lr=0.1, warmup_fraction=0.2)


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True, help="Folder for the demo's checkpoint (train/) and model.onnx; rewritten each run.")
@click.option("--train-epochs", "epochs", type=click.IntRange(min=1), default=None,
              help=f"Instead of the shipped reference model, train one for this many epochs on the sample "
                   f"(about 7 s each). [default: use the reference model; {DEMO_CONFIG.epochs} if it is missing]")
@click.option("--progress/--no-progress", default=True, show_default=True)
def demo(out_dir: Path, epochs: int | None, progress: bool) -> None:
    """Reference model → export → parity → int8 → evaluate → predict → bench, with the data built into the package.

    The shipped pruned reference (half the MACs, from 'resnet-edge prune') goes through export, int8 and
    the bench too, as the table's third row. Needs no download. With $RESNET_EDGE_DATA set it also
    evaluates on the full 10,000-image test set.
    """
    require("torch", "train", "resnet-edge demo")
    summary = _Summary()
    checkpoint = _model(out_dir, epochs, progress, summary)
    models = dict(zip(("fp32", "int8"), _export_and_quantize(checkpoint, out_dir, summary)))
    pruned = reference(PRUNED_REFERENCE).checkpoint
    if checkpoint == REFERENCE_CHECKPOINT and pruned.is_file():
        models[f"{PRUNED_REFERENCE} int8"] = _export_and_quantize(pruned, out_dir / PRUNED_REFERENCE, summary,
                                                                  "the pruned reference")[1]
    elif checkpoint == REFERENCE_CHECKPOINT:
        click.echo(f"note: the pruned reference is missing from this installation ({pruned}); its row is left out")
    sample_test = load_sample("test")
    top1 = _evaluate(models, sample_test, summary)
    predictor = _predict(models["fp32"], sample_test, summary)
    _bench(predictor, models, top1, summary)
    click.echo("\nsummary")
    click.echo(format_table(["stage", "result", "seconds"], summary.rows))
    click.echo(f"total {time.perf_counter() - summary.started:.0f} s; outputs in {out_dir}")


class _Summary:
    """One row per stage for the closing table: its name, its result and the seconds it took."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.rows: list[tuple[str, str, str]] = []
        self._since = self.started

    def start(self, heading: str | None = None) -> None:
        if heading is not None:
            click.echo(heading)
        self._since = time.perf_counter()

    def add(self, name: str, result: str) -> None:
        self.rows.append((name, result, f"{time.perf_counter() - self._since:.1f}"))


def _model(out_dir: Path, epochs: int | None, progress: bool, summary: _Summary) -> Path:
    """The shipped reference checkpoint, or one trained on the sample when asked (or when it is missing)."""
    from dataclasses import replace

    from resnet_edge.train import train as run_training

    if epochs is None and REFERENCE_CHECKPOINT.is_file() and REFERENCE_CARD.is_file():
        card = reference_card()
        summary.start(f"== 1/6 the reference model shipped in the package: {REFERENCE_CHECKPOINT}")
        summary.add("reference model", f"test top-1 {card['test_top1']:.2%} after {card['epochs']} epochs "
                                       f"({card['wall_seconds'] / 60:.0f} min on {card['hardware']})")
        return REFERENCE_CHECKPOINT
    epochs = epochs or DEMO_CONFIG.epochs
    summary.start("== 1/6 train on the built-in sample (1,000 train / 500 val images)")
    run_dir = out_dir / "train"
    for name in (LAST, BEST, METRICS):  # the demo starts over each time
        (run_dir / name).unlink(missing_ok=True)
    record = run_training(replace(DEMO_CONFIG, epochs=epochs), load_sample("train"), load_sample("val"),
                          run_dir, log=click.echo, progress=progress)
    summary.add("train", f"{epochs} epochs on the sample, val top-1 {record['val_acc']:.1%}")
    return run_dir / BEST


def _export_and_quantize(checkpoint: Path, out_dir: Path, summary: _Summary,
                         what: str | None = None) -> tuple[Path, Path]:
    from resnet_edge.calibration import CifarCalibrationReader
    from resnet_edge.export import export_onnx
    from resnet_edge.export.quantize import quantize_onnx

    of = f" ({what})" if what else ""
    summary.start(f"== 2/6 export to ONNX and check parity with PyTorch{of}")
    model_path = out_dir / "model.onnx"
    exported = export_onnx(checkpoint, model_path)
    summary.add(f"export + parity{of}", f"{model_path}, max |Δlogit| {exported.parity.max_abs_diff:.1e} "
                                        f"over {len(exported.parity.cases)} cases")

    summary.start(f"== 3/6 quantize to int8 (calibrated on sample training images, gated on the sample's val "
                  f"split){of}")
    int8_path = out_dir / "model.int8.onnx"
    metadata = exported.metadata  # calibrate with the model's own normalization, as quantize does
    reader = CifarCalibrationReader.from_training_split(load_sample("train"), mean=metadata.mean, std=metadata.std)
    # fallback: a model trained briefly on the sample may need a few fp32 nodes to pass the gate.
    quantized = quantize_onnx(model_path, int8_path, reader, load_sample("val"), fallback=True, log=click.echo)
    summary.add(f"quantize int8{of}", f"{int8_path}, {quantized.settings.method}, val drop "
                                      f"{quantized.comparison.drop:+.2f} points, agreement "
                                      f"{quantized.comparison.agreement:.1%}")
    return model_path, int8_path


def _evaluate(models: dict[str, Path], sample_test: Split, summary: _Summary) -> dict[str, float]:
    """Top-1 of every model on the sample's test split (and on the full one when $RESNET_EDGE_DATA is set)."""
    from resnet_edge.evaluate import evaluate_model

    summary.start(f"== 4/6 evaluate {', '.join(models)}")
    top1 = {name: evaluate_model(path, sample_test)["top1"] for name, path in models.items()}
    summary.add("evaluate (sample test)", ", ".join(f"{name} {value:.1%}" for name, value in top1.items())
                + f" on {len(sample_test)} images")
    if os.environ.get(DATA_ENV_VAR):
        summary.start()
        test = load_split("test", default_data_dir())
        full = {name: evaluate_model(path, test)["top1"] for name, path in models.items()}
        summary.add("evaluate (full test)", ", ".join(f"{name} {value:.2%}" for name, value in full.items())
                    + f" on {len(test)} images")
    return top1


def _predict(model_path: Path, sample_test: Split, summary: _Summary) -> Predictor:
    from resnet_edge.runtime import Predictor

    summary.start("== 5/6 predict five test images")
    predictor = Predictor(model_path)
    predictions = predictor.predict(sample_test.images[:5], top_k=1)
    names = predictor.class_names
    rows = [(i, names[label], name, f"{prob[0]:.3f}") for i, (label, name, prob) in
            enumerate(zip(sample_test.labels[:5], predictions.class_names, predictions.top_k_probabilities))]
    click.echo(format_table(["image", "true", "predicted", "probability"], rows))
    summary.add("predict", f"{sum(row[1] == row[2] for row in rows)}/5 correct")
    return predictor


def _bench(predictor: Predictor, models: dict[str, Path], top1: dict[str, float], summary: _Summary) -> None:
    from resnet_edge.runtime import Predictor, measure_latency

    summary.start(f"== 6/6 bench {', '.join(models)}")
    rows = []
    for name, path in models.items():
        runner = predictor if name == "fp32" else Predictor(path)
        one = measure_latency(runner, batch_size=1, warmup=20, iters=200)
        many = measure_latency(runner, batch_size=64, warmup=3, iters=20)
        rows.append((name, f"{top1[name]:.1%}", f"{path.stat().st_size / 1e6:.1f} MB", f"{one.p50_ms:.2f} ms",
                     f"{many.images_per_second:.0f} img/s"))
    click.echo(format_table(["model", "top-1 (sample test)", "size", "batch-1 p50", "batch-64"], rows))
    summary.add("bench", "batch-1 p50 " + ", ".join(f"{row[0]} {row[3]}" for row in rows))
