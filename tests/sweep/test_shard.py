"""Scale-out: shards of one sweep, launched by hand, by torchrun/SLURM variables, or as Ray tasks, give the
rows of one process."""

import numpy as np
import pandas as pd
import pytest
from conftest import assert_scores_close, sweep_config

from aaas_profile import runs, sweep
from aaas_profile.sweep import Shard, SweepError

KEY = [*runs.CELL_KEY, "metric"]


def config(model_dir, image_dir, out, **kw):
    return sweep_config(model_dir, image_dir, out, **{"masks": "half,thick,box", "batch_size": 1, **kw})


def same_rows(a, b, exact=True):
    """The same cells and metrics, none twice; equal values (bit for bit, or, where the processes ran with other
    thread counts, which changes the order of sums inside the UNet, within conftest.SCORE_ATOL)."""
    a, b = a.sort_values(KEY, ignore_index=True), b.sort_values(KEY, ignore_index=True)
    assert len(a) == len(b) and not a.duplicated(KEY).any() and not b.duplicated(KEY).any()
    assert a[KEY].equals(b[KEY])
    if exact:
        assert np.array_equal(a["value"].to_numpy(), b["value"].to_numpy(), equal_nan=True)
    else:
        assert_scores_close(a, b, KEY)


def test_shards_parse_and_come_from_launcher_variables():
    assert Shard.parse("1/4") == Shard(1, 4)
    assert Shard.from_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3"}) == Shard(3, 8)
    assert Shard.from_env({"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_MIN": "5",
                           "SLURM_ARRAY_TASK_COUNT": "4"}) == Shard(1, 4)
    assert Shard.from_env({}) == Shard(0, 1)
    for bad in ("4/4", "x/2", "1", "-1/2"):
        with pytest.raises(SweepError):
            Shard.parse(bad)


def test_shards_split_the_cells_into_disjoint_covering_sets(model_dir, image_dir, tmp_path):
    prepared = sweep.prepare(config(model_dir, image_dir, tmp_path / "run"))
    cells = sweep.all_cells(prepared)
    owned = [[c for p, c in enumerate(cells) if Shard(i, 3).owns(p)] for i in range(3)]
    assert sorted(len(o) for o in owned) == [2, 2, 2]
    assert {id(c) for o in owned for c in o} == {id(c) for c in cells}
    # With two samplers a cell is image × mask × seed × sampler: 12 cells, each sampler's spread over the shards.
    prepared = sweep.prepare(config(model_dir, image_dir, tmp_path / "run", sampler="repaint,ddim"))
    cells = sweep.all_cells(prepared)
    assert len(cells) == 12 and len(set(cells)) == 12
    owned = [[c for p, c in enumerate(cells) if Shard(i, 3).owns(p)] for i in range(3)]
    assert sorted(len(o) for o in owned) == [4, 4, 4] and set().union(*owned) == set(cells)
    assert all({c.sampler for c in o} == {"repaint", "ddim"} for o in owned)


def test_two_shards_give_exactly_the_rows_of_one_process(model_dir, image_dir, tmp_path):
    kw = {"sampler": "repaint,dpm-solver"}
    whole = runs.read_scores(sweep.run(config(model_dir, image_dir, tmp_path / "one", **kw)).run_dir)
    first = sweep.run(config(model_dir, image_dir, tmp_path / "sharded", **kw), shard=Shard(0, 2))
    assert first.cells_run == 12  # 6 of the 12 cells (samplers included), at two step counts
    second = sweep.run(config(model_dir, image_dir, tmp_path / "sharded", **kw), shard=Shard(1, 2))
    assert second.cells_run == 12
    sharded = runs.read_scores(tmp_path / "sharded")
    same_rows(whole, sharded)
    assert sharded.groupby("sampler")["run_id"].size().to_dict() == {"repaint": 6 * 2 * 6, "dpm-solver": 6 * 2 * 6}
    invocations = runs.Manifest(tmp_path / "sharded" / "manifest.json").read()["invocations"]
    assert [(i["shard"], i["cells_run"]) for i in invocations] == [("0/2", 12), ("1/2", 12)]


class StopAfter(sweep.Progress):
    """Ctrl-C after a number of finished batches."""

    def __init__(self, batches):
        self.batches = batches

    def batch_done(self, cells):
        self.batches -= 1
        if self.batches == 0:
            raise KeyboardInterrupt


def test_an_interrupted_shard_resumes_without_loss_or_duplicates(model_dir, image_dir, tmp_path):
    whole = runs.read_scores(sweep.run(config(model_dir, image_dir, tmp_path / "one")).run_dir)
    out = tmp_path / "sharded"
    with pytest.raises(KeyboardInterrupt):
        sweep.run(config(model_dir, image_dir, out), progress=StopAfter(2), shard=Shard(1, 2))
    assert len(runs.part_files(out)) == 2
    sweep.run(config(model_dir, image_dir, out), shard=Shard(0, 2))
    resumed = sweep.run(config(model_dir, image_dir, out), shard=Shard(1, 2))
    assert (resumed.cells_run, resumed.cells_skipped) == (4, 2)
    same_rows(whole, runs.read_scores(out))


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_runs_the_shards_and_gives_the_same_rows(model_dir, image_dir, tmp_path, local_ray):
    from aaas_profile.distributed import run_on_ray

    kw = {"sampler": "repaint,ddim", "masks": "half,thick"}  # the shards carry the samplers
    whole = runs.read_scores(sweep.run(config(model_dir, image_dir, tmp_path / "one", **kw)).run_dir)
    seen = []
    result, reports = run_on_ray(config(model_dir, image_dir, tmp_path / "ray", **kw), "local", shards=2,
                                 on_progress=lambda done, total: seen.append((done, total)))
    assert [r["shard"] for r in reports] == ["0/2", "1/2"]
    assert result.cells_run == 16 and seen[-1] == (16, 16)  # 2 images × 2 masks × 2 samplers × 2 step counts
    assert set(result.summary["sampler"]) == {"repaint", "ddim"}
    same_rows(whole, runs.read_scores(tmp_path / "ray"), exact=False)  # Ray workers run 1 thread each


def test_simulation_seeds_on_ray_give_the_rows_of_one_process(tmp_path, local_ray):
    from aaas_profile.sim.asps import paper_asps
    from aaas_profile.sim.env import SimConfig
    from aaas_profile.sim.runner import SimOptions
    from aaas_profile.sim.seeds import simulate_seeds

    options = SimOptions(policy="crash-avoid", episodes=2, optimum=False)
    config = SimConfig(horizon_s=100_000)  # about 100 tasks an episode
    here, _ = simulate_seeds(paper_asps, tmp_path / "here", options, config, [0, 1])
    there, summary = simulate_seeds(paper_asps, tmp_path / "ray", options, config, [0, 1], ray_address="local")
    key = ["seed", "policy", "episode"]
    assert len(here) == 2 * 2 * 4 and set(here["seed"]) == {0, 1}  # seeds × episodes × (policy + 3 baselines)
    pd.testing.assert_frame_equal(here.sort_values(key, ignore_index=True), there.sort_values(key, ignore_index=True))
    assert (tmp_path / "ray" / "seed-1" / "sim" / "crash-avoid" / "episodes.parquet").exists()
    assert summary.loc["crash-avoid", ("mean", "crashes")] == 0
    assert summary.loc["greedy-oracle", ("mean", "reward")] > summary.loc["random", ("mean", "reward")]


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_silent_cluster_address_is_one_line_before_ray_waits(monkeypatch, model_dir, image_dir, tmp_path):
    """ray.init retries an address nothing answers at for minutes; the TCP probe says so at once, for a sweep
    and for simulate's seeds (the same connect)."""
    ray = pytest.importorskip("ray")
    from typer.testing import CliRunner

    from aaas_profile import distributed
    from aaas_profile.cli import app

    port = _closed_port()
    assert distributed.unreachable(f"127.0.0.1:{port}") == "Connection refused"
    assert distributed.unreachable(f"ray://127.0.0.1:{port}") == "Connection refused"
    assert distributed.unreachable("local") is None and distributed.unreachable("auto") is None

    def must_not_start(*args, **kwargs):
        raise AssertionError("ray.init called for an address the probe found silent")

    monkeypatch.setattr(ray, "init", must_not_start)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    address = f"127.0.0.1:{port}"
    for args in (["sweep", "--model", str(model_dir), "--data", str(image_dir), "--steps", "2", "--save-images", "0",
                  "--out", str(tmp_path / "run"), "--ray", address],
                 ["simulate", "--policy", "random", "--episodes", "1", "--no-optimum", "--seeds", "0-1",
                  "--out", str(tmp_path / "sim"), "--ray", address]):
        result = CliRunner().invoke(app, args)
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and text.startswith("error:"), result.output
        assert f"cannot reach a Ray cluster at '{address}' (Connection refused)" in text
    assert not (tmp_path / "run").exists() and not (tmp_path / "sim").exists()  # nothing written
