import json
from pathlib import Path

import pytest
import torch
from conftest import RESOLUTION, save_model

from aaas_profile import models


def test_local_folders_of_both_layouts_load(tmp_path):
    for layout in ("pipeline", "flat"):
        folder = save_model(tmp_path / layout, layout=layout)
        loaded = models.load(str(folder))
        assert loaded.resolution == RESOLUTION
        assert loaded.source == f"local:{folder.resolve()}"
        assert loaded.scheduler_config["num_train_timesteps"] == 1000
        assert loaded.scheduler_config["beta_schedule"] == "linear"
        assert len(loaded.weights_sha256) == 64
        assert not loaded.unet.training
        out = loaded.unet(torch.zeros(1, 3, RESOLUTION, RESOLUTION), 10).sample
        assert out.shape == (1, 3, RESOLUTION, RESOLUTION)


def test_same_weights_load_identically_from_both_layouts(tmp_path):
    a = models.load(str(save_model(tmp_path / "a", layout="pipeline")))
    b = models.load(str(save_model(tmp_path / "b", layout="flat")))
    assert a.weights_sha256 == b.weights_sha256
    for (name, p), (_, q) in zip(a.unet.state_dict().items(), b.unet.state_dict().items(), strict=True):
        assert torch.equal(p, q), name


def test_named_model_loads_from_the_hugging_face_cache(offline_hub):
    """A hub model in the HF cache layout (models--org--name/snapshots/<commit>/) resolves offline."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = offline_hub / "hub" / "models--google--ddpm-ema-celebahq-256"
    save_model(repo / "snapshots" / commit, layout="flat")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    loaded = models.load("celeba")
    assert loaded.name == "celeba"
    assert loaded.source == f"hub:google/ddpm-ema-celebahq-256@{commit}"
    assert loaded.licence == "apache-2.0"


def test_missing_weights_say_how_to_get_them():
    with pytest.raises(models.ModelError) as err:
        models.load("celeba")
    message = str(err.value)
    assert "\n" not in message
    assert "hf download google/ddpm-ema-celebahq-256" in message


def test_unknown_name_and_bad_folders(tmp_path):
    with pytest.raises(models.ModelError, match="unknown model 'nope'"):
        models.load("nope")
    with pytest.raises(models.ModelError, match="not a diffusers model folder"):
        models.load(str(tmp_path))
    folder = save_model(tmp_path / "m", layout="flat")
    for weights in folder.glob("diffusion_pytorch_model.*"):
        weights.unlink()
    with pytest.raises(models.ModelError, match="no weights"):
        models.load(str(folder))
    (folder / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(models.ModelError, match="UNet2DConditionModel"):
        models.load(str(folder))


def test_cards_describe_the_named_models():
    cards = models.cards()
    assert cards["celeba"].hub_id == "google/ddpm-ema-celebahq-256"
    assert any(card.domain == "scenes" for card in cards.values())
    assert all(card.resolution >= 64 and card.licence for card in cards.values())


def test_default_schedule_when_the_folder_has_none(tmp_path):
    folder = save_model(tmp_path / "m", layout="flat")
    (folder / "scheduler_config.json").unlink()
    loaded = models.load(str(folder))
    assert loaded.scheduler_config == models.DEFAULT_SCHEDULE
    assert loaded.schedule_source.startswith("default")
    assert Path(loaded.folder) == folder.resolve()
