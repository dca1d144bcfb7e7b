"""The opt-in training cache (``SKVMF_TRAINING_CACHE``): a request seen before
returns the network training returned, without training; any change of what
the weights depend on trains anew."""

import pytest
import torch

from skvmf import training
from skvmf.training import train_digits_classifier

SMALL = {"classes": [0, 1], "epochs": 1, "width": 0.0625}


@pytest.fixture
def cache(tmp_path, monkeypatch, one_torch_thread):
    folder = tmp_path / "cache"
    monkeypatch.setenv("SKVMF_TRAINING_CACHE", str(folder))
    return folder


def _no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("trained although the network was cached")

    monkeypatch.setattr(training.Trainer, "fit", refuse)


def test_hit_returns_the_trained_network_and_its_checkpoints(
    cache, tmp_path, monkeypatch
):
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    model, result = train_digits_classifier(
        checkpoint_dir=first_dir, checkpoint_iterations=[0, 5], **SMALL
    )
    _no_training(monkeypatch)
    again, cached = train_digits_classifier(
        checkpoint_dir=second_dir, checkpoint_iterations=[0, 5], **SMALL
    )
    assert not again.training
    for name, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert cached.history == result.history
    assert cached.n_iterations == result.n_iterations
    assert cached.test_accuracy == result.test_accuracy
    assert cached.config == result.config
    assert cached.step_losses == result.step_losses and cached.step_losses
    assert cached.step_batch_sizes == result.step_batch_sizes
    assert [i for i, _ in cached.checkpoints] == [0, 5]
    for (_, old), (_, new) in zip(result.checkpoints, cached.checkpoints):
        assert new.parent == second_dir
        assert new.read_bytes() == old.read_bytes()


@pytest.mark.parametrize(
    "change",
    [{"epochs": 2}, {"random_state": 1}, {"classes": [0, 2]}, {"lr": 1e-3}],
)
def test_any_change_trains_anew(cache, change):
    train_digits_classifier(**SMALL)
    entries = {p.name for p in cache.iterdir() if p.is_dir()}
    train_digits_classifier(**{**SMALL, **change})
    assert len({p.name for p in cache.iterdir() if p.is_dir()} - entries) == 1


def test_thread_count_is_part_of_the_key(cache):
    train_digits_classifier(**SMALL)
    torch.set_num_threads(2)  # the fixture restores it
    train_digits_classifier(**SMALL)
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2


def test_unset_variable_caches_nothing(tmp_path, monkeypatch, one_torch_thread):
    monkeypatch.delenv("SKVMF_TRAINING_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    train_digits_classifier(**SMALL)
    assert list(tmp_path.iterdir()) == []
