import math

import piq
import pytest
import torch

from aaas_profile import metrics

FULL_REFERENCE = [name for name, m in metrics.METRICS.items() if m.full_reference]


def test_tv_on_a_hand_computed_step_edge():
    # left half 0, right half 1, three equal channels: one horizontal difference of 1 per row and channel.
    x = torch.zeros(1, 3, 64, 64)
    x[..., 32:] = 1.0
    squared_sum = 3 * 64 * 1.0
    differences = 3 * (64 * 63 + 63 * 64)
    assert metrics.total_variation(x).item() == pytest.approx(math.sqrt(squared_sum / differences), rel=1e-6)
    assert metrics.total_variation(torch.full((1, 3, 64, 64), 0.3)).item() == 0.0


def test_tv_compares_across_sizes():
    # the same pattern (a 4-px checkerboard) at two sizes scores the same
    def board(size):
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        return (((yy // 4) + (xx // 4)) % 2).float().expand(1, 3, size, size)

    assert metrics.total_variation(board(64)).item() == pytest.approx(metrics.total_variation(board(256)).item(),
                                                                       rel=0.02)


def natural(n=2, size=96):
    """Smooth images with edges: gradients, a disc, mild texture."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    images = []
    for i in range(n):
        disc = (((xx - 0.4 - 0.1 * i) ** 2 + (yy - 0.5) ** 2) < 0.06).float()
        base = torch.stack([xx, yy, 0.3 + 0.5 * disc])
        images.append((base + 0.02 * torch.randn(3, size, size)).clamp(0, 1))
    return torch.stack(images)


def test_full_reference_metrics_are_perfect_on_identical_images_and_worse_on_degraded_ones():
    x = natural()
    noisy = (x + 0.15 * torch.randn_like(x)).clamp(0, 1)
    same = metrics.score(x, x, FULL_REFERENCE)
    worse = metrics.score(noisy, x, FULL_REFERENCE)
    perfect = {"dss": 1.0, "haarpsi": 1.0, "vif": 1.0, "mdsi": 0.0}
    for name in FULL_REFERENCE:
        assert same[name].shape == (2,)
        assert same[name] == pytest.approx([perfect[name]] * 2, abs=1e-4), name
        if metrics.METRICS[name].higher_is_better:
            assert (worse[name] < same[name] - 0.05).all(), name
        else:
            assert (worse[name] > same[name] + 0.05).all(), name


def test_no_reference_metrics_rank_noise_as_worse():
    x = natural(size=128)
    noisy = (x + 0.15 * torch.randn_like(x)).clamp(0, 1)
    clean, bad = metrics.score(x, x, ["tv", "brisque"]), metrics.score(noisy, x, ["tv", "brisque"])
    assert (bad["tv"] > clean["tv"]).all()
    assert (bad["brisque"] > clean["brisque"]).all()


def test_directions_match_design():
    better = {name: m.higher_is_better for name, m in metrics.METRICS.items()}
    assert better == {"tv": False, "brisque": False, "dss": True, "haarpsi": True, "mdsi": False, "vif": True}


def test_batched_scores_equal_one_at_a_time():
    x = natural(n=3)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    together = metrics.score(y, x)
    for i in range(3):
        alone = metrics.score(y[i:i + 1], x[i:i + 1])
        for name in metrics.ALL:
            assert alone[name].item() == pytest.approx(together[name][i].item(), rel=1e-4, abs=1e-6), name


def test_too_small_images_are_refused_not_scored():
    x = torch.rand(1, 3, 40, 40)
    with pytest.raises(metrics.MetricError, match="brisque ≥ 64 px.*vif ≥ 41 px"):
        metrics.score(x, x)
    small = torch.rand(1, 3, 31, 31)
    with pytest.raises(metrics.MetricError, match="dss ≥ 32 px"):
        metrics.score(small, small, ["dss"])
    assert metrics.score(small, small, ["tv", "haarpsi"])["tv"].shape == (1,)


def test_select_validates_names():
    assert metrics.select("vif,tv") == ("vif", "tv")
    assert metrics.select(None) == metrics.ALL
    with pytest.raises(metrics.MetricError, match="unknown metric"):
        metrics.select("psnr")


def test_brisque_of_a_constant_image_is_nan_and_the_rest_still_score():
    x = natural(n=2, size=64)
    x[1] = 0.5
    values = metrics.score(x, x, ["brisque"])["brisque"]
    assert math.isfinite(values[0].item())
    assert math.isnan(values[1].item())


# ---- asymmetric metrics get their arguments in order -----------------------------------------------------------

# Full-reference metrics whose value changes when output and reference swap places (measured on piq 0.8.0: VIF
# by 0.05-0.2, MDSI by 0.001-0.1 on noisy, blurred and contrast-stretched images; DSS and HaarPSI not at all).
ASYMMETRIC = {"mdsi", "vif"}
PIQ = {"dss": piq.dss, "haarpsi": piq.haarpsi, "mdsi": piq.mdsi, "vif": piq.vif_p}


def test_full_reference_metrics_call_piq_with_the_output_first():
    """piq documents x as "an input tensor" (the image judged) and y as "a target tensor" (the reference); the
    project scores (output, reference) as piq's (x, y), value for value."""
    reference = natural()
    output = (reference + 0.1 * torch.randn_like(reference)).clamp(0, 1)
    ours = metrics.score(output, reference, FULL_REFERENCE)
    swapped = metrics.score(reference, output, FULL_REFERENCE)
    assert set(PIQ) == set(FULL_REFERENCE)
    for name in FULL_REFERENCE:
        theirs = PIQ[name](output, reference, reduction="none", data_range=1.0).double()
        assert torch.equal(ours[name], theirs), name
        moved = (ours[name] - swapped[name]).abs().max().item()
        assert (moved > 0.01) == (name in ASYMMETRIC), (name, moved)


def test_vif_rewards_contrast_stretching_only_with_the_reference_second():
    """VIF (Sheikh & Bovik 2006) is the information the output keeps about the reference, over the reference's
    own; an output with more contrast than its reference scores above 1 (piq's docstring says so too), the
    same pair the other way round scores below 1."""
    reference = 0.25 + 0.5 * natural()  # room for a stretch without clipping
    stretched = 0.5 + 1.4 * (reference - 0.5)
    assert stretched.min() >= 0 and stretched.max() <= 1
    assert (metrics.score(stretched, reference, ["vif"])["vif"] > 1.05).all()
    assert (metrics.score(reference, stretched, ["vif"])["vif"] < 0.95).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_metrics_on_cuda_equal_the_cpus():
    """The sweep scores on its device. Bound not yet measured on a GPU (none was at hand when this was
    written): float32 sums in another order, so 1e-3 relative; tighten it from a `-m gpu` run."""
    x = natural(n=2, size=96)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    cpu = metrics.score(y, x)
    cuda = metrics.score(y.cuda(), x.cuda())
    for name in metrics.ALL:
        assert cuda[name].device.type == "cpu"  # scores come back to the CPU
        assert cuda[name].numpy() == pytest.approx(cpu[name].numpy(), rel=1e-3, abs=1e-5), name


def test_the_metrics_are_computed_in_the_order_tables_list_them():
    """``core.curve_keys.METRIC_NAMES`` (the report's and the panels' order, known without loading torch or piq)
    is the order ``metrics.METRICS`` computes them in."""
    from aaas_profile.core import curve_keys

    assert metrics.ALL == curve_keys.METRIC_NAMES
