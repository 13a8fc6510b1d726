"""``lic train``."""
from __future__ import annotations

from pathlib import Path

import click

from liccodec.cli.main import main


@main.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Recipe TOML ([model] and [train] tables), e.g. models/msh.mse.toml.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (overrides the recipe's train.out).")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue from OUT/last.pt when it exists.")
@click.option("--max-minutes", type=float, help="Stop cleanly (with a checkpoint) after this wall-clock time.")
@click.option("--steps", type=int, help="Override the total step count.")
@click.option("--device", help="torch device (default: cuda when present, else cpu).")
def train(config_path: str, out: str | None, resume: bool, max_minutes: float | None,
          steps: int | None, device: str | None) -> None:
    """Train (or resume training) a model from a recipe."""
    from liccodec.train.config import Recipe
    from liccodec.train.loop import Trainer

    recipe = Recipe.load(config_path)
    if out:
        recipe.train.out = out
    if steps:
        recipe.train.steps = steps
    trainer = Trainer(recipe, device)
    last = Path(recipe.train.out) / "last.pt"
    if resume and last.exists():
        trainer.load(last)
        click.echo(f"resumed from {last} at step {trainer.state.step}", err=True)
    trainer.run(max_minutes=max_minutes)
    click.echo(f"stopped at step {trainer.state.step}; checkpoint {last}", err=True)
