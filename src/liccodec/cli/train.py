"""``lic train``."""
from __future__ import annotations

from pathlib import Path

import click

from liccodec.cli.main import main


@main.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Recipe TOML ([model] and [train] tables), e.g. models/msh.mse/recipe.toml.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (overrides the recipe's train.out).")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue from OUT/last.pt when it exists.")
@click.option("--max-minutes", type=float, help="Stop cleanly (with a checkpoint) after this wall-clock time.")
@click.option("--steps", type=int, help="Override the total step count.")
@click.option("--device", help="torch device (default: cuda when present, else cpu).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a [train] field, VALUE in TOML syntax (repeatable), "
                   "e.g. --set decay_start=40000 --set 'init=\"models/msh.mse.safetensors\"'.")
def train(config_path: str, out: str | None, resume: bool, max_minutes: float | None,
          steps: int | None, device: str | None, overrides: tuple[str, ...]) -> None:
    """Train (or resume training) a model from a recipe.

    A run folder holds last.pt (the full resumable state), train.jsonl, val.jsonl and the
    recipe as run. Stop it any time (Ctrl-C loses at most ckpt_every_s of work, or use
    --max-minutes) and run the same command again to continue.
    """
    from liccodec.errors import UsageError
    from liccodec.train.config import Recipe
    from liccodec.train.loop import Trainer

    try:
        recipe = Recipe.load(config_path)
    except ValueError as e:  # a field out of range or inconsistent, unknown keys, bad TOML
        raise UsageError(f"{config_path}: {e}") from None
    if out:
        recipe.train.out = out
    if steps:
        recipe.train.steps = steps
    try:
        recipe.train.override(overrides)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--set") from None
    trainer = Trainer(recipe, device)
    last = Path(recipe.train.out) / "last.pt"
    if resume and last.exists():
        trainer.load(last)
        click.echo(f"resumed from {last} at step {trainer.state.step}", err=True)
    trainer.run(max_minutes=max_minutes)
    click.echo(f"stopped at step {trainer.state.step}; checkpoint {last}", err=True)


@main.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--id", "model_id", required=True, help="Model id arch.tag, e.g. msh.mse.")
@click.option("--out", "out_dir", default="models", show_default=True, type=click.Path(file_okay=False),
              help="Folder of the shipped weights and manifest.json.")
@click.option("--description", default="", help="One line for `lic models`.")
@click.option("--recipe", help="Path of the recipe TOML to record in the manifest.")
@click.option("--base", default="", help="A shipped model in OUT whose every tensor this model has, with the same "
              "shape and dtype (the same architecture and config, or one it extends, e.g. charm.mse under an "
              "icisp model): write only the tensors that are new or differ from it (e.g. a synthesis trained "
              "behind its frozen encoder). The base may have a base itself.")
@click.option("--metric", default="mse", show_default=True, help="What the model was tuned for (mse, lpips, ...).")
@click.option("--hardware", help="Where the run trained, for its training record, when not on this machine "
              "(default: this machine's CPU or CUDA device).")
@click.option("--data", help="What the run trained on, for its training record (default: shared/data/train).")
def export_cmd(checkpoint: str, model_id: str, out_dir: str, description: str, recipe: str | None,
               base: str, metric: str, hardware: str | None, data: str | None) -> None:
    """Export a training checkpoint's EMA weights as shipped weights (safetensors + manifest)."""
    from liccodec.train.export import export

    record = {k: v for k, v in (("hardware", hardware), ("data", data)) if v}
    path = export(checkpoint, model_id, out_dir, description=description, recipe_file=recipe, base=base,
                  metric=metric, extra=record)
    click.echo(f"wrote {path} ({path.stat().st_size:,} bytes) and its entry in {Path(out_dir) / 'manifest.json'}")


@main.command("plot-training")
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("-o", "--out", default="docs/learning_curve.png", show_default=True, help="PNG to write.")
def plot_training(run_dir: str, out: str) -> None:
    """Plot a run's validation curve (real coded bpp and PSNR per lambda over steps).

    RUN_DIR is a run folder or a val.jsonl-style file (e.g. models/msh.mse/val.jsonl)."""
    from liccodec.train.plot import plot_run

    plot_run(Path(run_dir), Path(out))
    click.echo(f"wrote {out}")
