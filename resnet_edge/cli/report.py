"""``resnet-edge report``: charts and a markdown summary of a training run folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from resnet_edge.cli.options import data_options, load_data
from resnet_edge.data import Split, load_sample
from resnet_edge.errors import DataError
from resnet_edge.extras import require

if TYPE_CHECKING:
    from resnet_edge.run_folder import TrainingRun


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the charts and summary.md. [default: RUN_DIR/report]")
@data_options
@click.option("--no-confusion", is_flag=True,
              help="Skip the confusion matrix: no validation images needed, no model pass.")
def report(run_dir: Path, out_dir: Path | None, data_dir: Path | None, download: bool, sample: bool,
           no_confusion: bool) -> None:
    """Charts and a markdown summary of RUN_DIR, a run folder from 'resnet-edge train'.

    \b
    Writes into RUN_DIR/report/ (or --out):
      loss.png, accuracy.png   train and val curves per epoch
      lr.png                   learning rate per epoch
      confusion.png            best.pt on the validation split
      summary.md               epochs, accuracy, time, config, hardware; embeds the charts

    The confusion matrix needs the validation images, found as by the other
    commands (--data-dir, --download, --sample); a run trained on the built-in
    sample uses the sample's val split unless one of them is given.
    """
    require("matplotlib", "report", "resnet-edge report")
    require("torch", "train", "resnet-edge report")
    from resnet_edge.report import headline, write_report
    from resnet_edge.run_folder import load_run

    run = load_run(run_dir)
    val_split = None if no_confusion else _validation_split(run, data_dir, download, sample)
    result = write_report(run, out_dir, val_split)
    for line in headline(run, result.confusion):
        click.echo(line)
    for path in result.files:
        click.echo(f"wrote {path}")


def _validation_split(run: TrainingRun, data_dir: Path | None, download: bool, sample: bool) -> Split:
    if run.trained_on_sample and not (sample or download or data_dir is not None):
        # The demo's run has no data set behind it; its own val split is the one that matches.
        click.echo("run trained on the built-in sample: confusion matrix on the sample's val split")
        return load_sample("val")
    try:
        return load_data("val", data_dir, download, sample)
    except DataError as exc:
        raise DataError(f"{exc}; or pass --no-confusion to skip the confusion matrix") from None
