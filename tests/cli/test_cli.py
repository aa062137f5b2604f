"""The command line end to end: real model folder, real images, one-line errors with non-zero exits."""

import re

import numpy as np
import pytest
from conftest import invoke, one_line_error
from PIL import Image

from aaas_profile import cli, runs


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Rich fits tables to the terminal; a wide one keeps cells on one line for the assertions."""
    monkeypatch.setattr(cli.common.console, "width", 240)


FAST = ["--steps", "5", "--masks", "half", "--jump-length", "1", "--jump-n-sample", "1", "--save-images", "0"]


def test_sweep_runs_and_prints_a_summary(model_dir, image_dir, tmp_path):
    result = invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    for metric in ("tv", "brisque", "dss", "haarpsi", "mdsi", "vif"):
        assert metric in result.output
    assert "2 cells run, 0 already done" in result.output
    assert len(runs.read_scores(tmp_path / "run")) == 2 * 6


def test_named_model_without_weights_says_how_to_get_them(image_dir, tmp_path):
    result = invoke("sweep", "--model", "celeba", "--data", image_dir, "--out", tmp_path / "run")
    one_line_error(result, "hf download google/ddpm-ema-celebahq-256")
    assert not (tmp_path / "run").exists()


def test_models_lists_every_card():
    result = invoke("models")
    assert result.exit_code == 0
    for name in ("celeba", "church", "google/ddpm-ema-celebahq-256", "apache-2.0", "absent"):
        assert name in result.output


@pytest.mark.parametrize("mode", ["RGBA", "L", "I;16", "P", "CMYK"])
def test_any_image_mode_is_converted_and_swept(model_dir, tmp_path, mode):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (72, 90, 3), dtype=np.uint8))
    if mode == "I;16":
        Image.fromarray((rng.random((72, 90)) * 65535).astype(np.uint16)).save(folder / "deep.png")
    elif mode == "CMYK":
        rgb.convert("CMYK").save(folder / "print.jpg")
    else:
        rgb.convert(mode).save(folder / "image.png")
    result = invoke("sweep", "--model", model_dir, "--data", folder, *FAST, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output


def test_bad_input_gives_one_line_and_keeps_what_was_written(model_dir, image_dir, tmp_path):
    out = tmp_path / "run"
    assert invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, "--out", out).exit_code == 0
    parts = runs.part_files(out)
    before = runs.read_scores(out)

    (image_dir / "broken.png").write_bytes(b"\x89PNG not really")
    one_line_error(invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, "--out", out), "broken.png")
    (image_dir / "broken.png").unlink()

    Image.new("RGB", (1, 1)).save(image_dir / "dot.png")
    one_line_error(invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, "--out", out), "dot.png")
    (image_dir / "dot.png").unlink()

    one_line_error(invoke("sweep", "--model", "no-such-model", "--data", image_dir, "--out", out),
                   "unknown model 'no-such-model'")
    one_line_error(invoke("sweep", "--model", model_dir, "--data", tmp_path / "nowhere", "--out", out))
    one_line_error(invoke("sweep", "--model", model_dir, "--data", image_dir, "--masks", "stars", "--out", out),
                   "stars")
    one_line_error(invoke("sweep", "--model", model_dir, "--data", image_dir, "--steps", "ten", "--out", out),
                   "--steps")

    assert runs.part_files(out) == parts
    assert runs.read_scores(out).equals(before)


def test_several_samplers_get_a_column_each_in_the_summary(model_dir, image_dir, tmp_path):
    result = invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, "--metrics", "tv", "--sampler",
                    "ddim,dpm-solver", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "2 samplers (ddim, dpm-solver)" in result.output and "4 cells run, 0 already done" in result.output
    rows = [line.split() for line in result.output.splitlines() if line.split()[:2] in (["ddim", "tv"],
                                                                                       ["dpm-solver", "tv"])]
    assert sorted(row[0] for row in rows) == ["ddim", "dpm-solver"]  # one row each, not pooled
    assert re.search(r"^ *sampler +metric +better", result.output, re.M)  # the header: sampler first
    assert "medians over 2 images × 1 seed(s)" in result.output  # the title says what each median pools


def test_an_unknown_sampler_is_one_line_and_writes_nothing(model_dir, image_dir, tmp_path):
    result = invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, "--sampler", "repaint,ddpm",
                    "--out", tmp_path / "run")
    one_line_error(result, "unknown sampler(s) 'ddpm'", "choose from repaint, repaint-diffusers, ddim, dpm-solver")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("fill, words", [(255, "nothing to inpaint"), (0, "nothing known")])
def test_full_and_empty_user_masks_are_refused(model_dir, image_dir, tmp_path, fill, words):
    masks = tmp_path / "mymasks"
    masks.mkdir()
    Image.new("L", (64, 64), fill).save(masks / "m.png")
    result = invoke("sweep", "--model", model_dir, "--data", image_dir, "--masks", masks, "--steps", "5",
                    "--out", tmp_path / "run")
    one_line_error(result, words)


def test_fp16_needs_cuda(model_dir, image_dir, tmp_path):
    result = invoke("sweep", "--model", model_dir, "--data", image_dir, "--dtype", "fp16", "--device", "cpu",
                    "--out", tmp_path / "run")
    one_line_error(result, "needs a CUDA device")


def test_help_explains_the_step_grid():
    result = invoke("sweep", "--help")
    assert result.exit_code == 0
    text = " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())  # without rich's panel borders
    assert "use divisors of the 1000 training steps there" in text
    assert "[default: 10,15,20,25,30,40,50,75,100,150,200,250 (the paper's range in 12 starts" in text
    assert "--respacing" in text and "[default: 250 for repaint, steps for the others]" in text


def test_every_help_default_is_the_declared_one():
    """The defaults --help shows are read from the option declarations (aaas_profile/options.py), none written
    by hand: every declared default appears in its command's help, and a changed declaration changes it."""
    import copy
    from dataclasses import fields

    from aaas_profile import options
    from aaas_profile.cli import declared

    batch_size = next(f for f in fields(options.SweepOptions) if f.name == "batch_size")
    assert declared.shown_default(batch_size) == "8"
    changed = copy.copy(batch_size)
    changed.default = 12
    assert declared.shown_default(changed) == "12"
    for command in ("sweep", "fit", "simulate", "train", "report"):
        text = " ".join(re.sub("[│╭╮╰╯─]", " ", invoke(command, "--help").output).split())
        for f in options.declared(command):
            shown = declared.shown_default(f)
            if shown is not None:
                assert f"[default: {' '.join(shown.split())}]" in text, (command, f.name)


# --- conventions: --version, --help without heavy imports, --json, --quiet, --dry-run -----------------------

HEAVY = ("torch", "diffusers", "piq", "scipy", "pandas", "matplotlib")


@pytest.mark.parametrize("command", [[], ["sweep"], ["fit"], ["simulate"], ["report"], ["train"], ["models"],
                                     ["models", "import-repaint"]])
def test_help_imports_none_of_the_heavy_libraries(command):
    """`--help` starts at once because the commands import their stage modules only when they run."""
    import subprocess
    import sys

    code = ("import sys\nfrom aaas_profile.cli import app\ntry:\n    app([*sys.argv[1:], '--help'])\n"
            "except SystemExit:\n    pass\nprint('LOADED', *sorted({m.split('.')[0] for m in sys.modules} & set("
            f"{HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, check=True).stdout
    assert "Usage:" in out and out.strip().splitlines()[-1] == "LOADED"


def test_version_and_the_ray_extra_in_help():
    from aaas_profile import __version__

    assert invoke("--version").output.strip() == f"aaas-profile {__version__}"
    assert "aaas-profile[ray]" in invoke("sweep", "--help").output.replace("│", " ")  # not eaten as markup
    assert "--install-completion" in invoke("--help").output


def test_json_prints_one_document_and_quiet_prints_nothing(model_dir, image_dir, tmp_path):
    import json

    result = invoke("--json", "sweep", "--model", model_dir, "--data", image_dir, *FAST, "--metrics", "tv",
                    "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # nothing but the document on stdout
    assert document["cells_run"] == 2 and document["summary"][0]["metric"] == "tv"
    assert document["summary"][0]["images"] == 2
    quiet = invoke("-q", "sweep", "--model", model_dir, "--data", image_dir, *FAST, "--metrics", "tv",
                   "--out", tmp_path / "run")
    assert quiet.exit_code == 0 and quiet.stdout == ""
    # the next invocation without the options prints again (the options do not stick to the process)
    assert "already done" in invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, "--metrics", "tv",
                                    "--out", tmp_path / "run").output


def test_dry_run_plans_and_writes_nothing(model_dir, image_dir, tmp_path):
    import json

    result = invoke("--json", "sweep", "--model", model_dir, "--data", image_dir, *FAST, "--steps", "5,10",
                    "--dry-run", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    # 2 images × 1 mask × 1 seed × 2 step counts, UNet calls 5 + 10 per cell (no resampling jumps)
    assert (plan["cells"], plan["unet_calls"], plan["cells_done"]) == (4, 2 * (5 + 10), 0)
    assert plan["seconds_per_forward"] > 0 and plan["estimated_s"] == pytest.approx(30 * plan["seconds_per_forward"])
    assert not (tmp_path / "run").exists()
    text = invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, "--dry-run", "--out",
                  tmp_path / "run").output
    assert "dry run: 2 cells to run" in " ".join(text.split())


def test_a_sweep_says_at_once_how_many_images_a_conclusion_needs(model_dir, image_dir, tmp_path):
    # 2 images at 2 step counts: the trend test needs 6, intervals 3
    result = invoke("sweep", "--model", model_dir, "--data", image_dir, *FAST, "--steps", "5,10", "--metrics",
                    "tv", "--dry-run", "--out", tmp_path / "run")
    text = " ".join(result.output.split())
    assert "warning: 2 image(s) at 2 step counts" in text and "needs ≥ 6" in text and "cannot conclude" in text


def test_models_reads_at_80_columns_with_names_and_hub_ids_whole(monkeypatch):
    monkeypatch.setattr(cli.common.console, "width", 80)
    result = invoke("models")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    for whole in ("google/ddpm-ema-celebahq-256", "google/ddpm-ema-bedroom-256", "google/ddpm-ema-church-256"):
        assert any(whole in line for line in lines), whole


def test_the_bundled_default_sweep_is_found_from_anywhere(tmp_path, monkeypatch):
    """``aaas-profile sweep`` with no flags (``make demo``'s job) finds the bundled faces and model wherever it is
    run from: the default data folder is resolved from the package, not the working folder. A dry run says the
    default's cost (120 cells, 26,850 UNet image-forwards) and writes nothing."""
    from aaas_profile import sweep

    assert sweep.DEFAULT_DATA.is_dir() and len(list(sweep.DEFAULT_DATA.glob("*.png"))) == 10
    monkeypatch.chdir(tmp_path)
    result = invoke("sweep", "--dry-run")
    text = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "120 cells to run" in text and "26,850 UNet image-forwards" in text and "nothing written" in text
    assert list(tmp_path.iterdir()) == []
