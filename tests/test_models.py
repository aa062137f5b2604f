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


def test_learned_variance_models_load_and_inpaint_with_their_epsilon_half(tmp_path):
    from diffusers import UNet2DModel

    from aaas_profile.inpaint import RePaintConfig, inpaint

    def save(channels_out, name):
        unet = UNet2DModel(sample_size=64, in_channels=3, out_channels=channels_out, layers_per_block=1,
                           block_out_channels=(16, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8)
        unet.save_pretrained(tmp_path / name)
        return tmp_path / name

    loaded = models.load(str(save(6, "sigma")))
    assert loaded.learned_variance and loaded.describe()["learned_variance"] is True
    originals, masks = torch.rand(1, 3, 64, 64), torch.ones(1, 1, 64, 64)
    masks[..., 32:] = 0
    result = inpaint(loaded.unet, loaded.scheduler_config, originals, masks, [0], 5, RePaintConfig(1, 1))
    assert result.images.shape == (1, 3, 64, 64)
    with pytest.raises(models.ModelError, match="predicts 4 channels for 3 in"):
        models.load(str(save(4, "odd")))
