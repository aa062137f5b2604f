"""The ``models`` commands: ``models`` lists the named models, ``models import-repaint`` calls
``aaas_profile.repaint_import``. Both parse, call and print."""

from __future__ import annotations

import time

import typer
from rich import box
from rich.table import Table

from aaas_profile.cli.common import console, emit, key_value_table
from aaas_profile.options import ImportRepaintOptions


def import_repaint(o: ImportRepaintOptions) -> None:
    """Convert one of RePaint's guided-diffusion checkpoints into a diffusers model that `--model NAME` uses.

    Examples:

      aaas-profile models import-repaint data/pretrained/celeba256_250000.pt --name repaint-celeba

      aaas-profile models import-repaint places256_300000.pt --name repaint-places --config places256

      aaas-profile sweep --model repaint-celeba --steps 25,50,100,250

    Writes models/NAME/ (unet/ with safetensors weights, scheduler/, model_index.json, a README.md model card
    with the source file's sha256) and models/NAME.toml. The network predicts ε and a learned variance; the
    sampler uses ε only (see the model card). Checkpoints: RePaint's download.sh (CC BY-NC-SA 4.0).
    """
    from aaas_profile import models, repaint_import

    started = time.perf_counter()
    file, name = o.file, o.name
    cfg = repaint_import.resolve_config(o.config)
    folder = repaint_import.import_repaint(file, name, cfg, models_dir=repaint_import.MODELS_DIR, overwrite=o.force)
    loaded = models.load(str(folder))
    info = loaded.describe()
    schedule = loaded.scheduler_config
    console.print(key_value_table(f"imported {file.name} as model '{name}'", [
        ("config", f"{cfg.name}: {cfg.description}"),
        ("folder", str(folder)),
        ("card", str(folder.parent / f"{name}.toml")),
        ("parameters", f"{info['parameters']:,}"),
        ("resolution", f"{loaded.resolution} px"),
        ("outputs", f"{loaded.unet.config.out_channels} channels (ε + learned variance; sampled with ε)"
         if loaded.learned_variance else f"{loaded.unet.config.out_channels} channels (ε)"),
        ("schedule", f"{schedule['beta_schedule']} β {schedule['beta_start']:g} … {schedule['beta_end']:g}, "
                     f"{schedule['num_train_timesteps']} steps"),
        ("weights sha256", info["weights_sha256"]),
        ("licence", loaded.licence),
        ("took", f"{time.perf_counter() - started:.1f} s"),
    ]))
    console.print(f"use it: aaas-profile sweep --model {name}", highlight=False)
    emit({"name": name, "folder": folder, "config": cfg.name, "parameters": info["parameters"],
          "weights_sha256": info["weights_sha256"]})


def list_models(ctx: typer.Context) -> None:
    """List the named models: where their weights come from, resolution, licence, and whether present.

    Examples:

      aaas-profile models

      aaas-profile models import-repaint celeba256_250000.pt --name celeba-repaint
    """
    if ctx.invoked_subcommand is not None:
        return
    from aaas_profile.models import cards, find_weights

    # Readable at 80 columns: names, resolutions and hub ids whole (never broken mid-word); the description
    # wraps at spaces under the source; only a long local path folds.
    table = Table(title="models (models/*.toml); any diffusers folder also works as --model PATH",
                  box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("px", no_wrap=True, justify="right")
    table.add_column("weights", no_wrap=True)
    table.add_column("source · licence · description", overflow="fold")
    listed = []
    for card in cards().values():
        folder = find_weights(card, download=False)
        listed.append({"name": card.name, "hub_id": card.hub_id, "local_dir": card.local_dir,
                       "resolution": card.resolution, "licence": card.licence, "weights": folder,
                       "description": card.description})
        source = f"hub {card.hub_id}" if card.hub_id else f"local {card.local_dir}"
        present = "[green]present[/]" if folder else "[yellow]absent[/]"
        where = f"\n{folder}" if folder and card.hub_id else ""  # a hub model found in the cache: where
        table.add_row(card.name, str(card.resolution), present,
                      f"{source}{where}\n{card.licence} · {card.description}")
    console.print(table)
    emit({"models": listed})
