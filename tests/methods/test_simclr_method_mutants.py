"""SimCLR's method on hand-built cases: the projection head's layout, the two views, the
loss and probe against a hand computation, the one-image check, validation, and the DDP
branch (rank, offset, the gathered candidates and the gradient rows) with a scripted
two-process group."""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_robust.errors import ConfigurationError
from lit_robust.losses import nt_xent
from lit_robust.methods import SimCLR
from lit_robust.methods.base import RobustClassifier
from lit_robust.methods.simclr import gather as G
from lit_robust.methods.simclr import method as M
from lit_robust.models.surgery import get_head

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # no Trainer


def simclr(**kwargs) -> SimCLR:
    torch.manual_seed(0)
    model = SimCLR(backbone="tiny_cnn", backbone_kwargs={"width": 4}, num_classes=10,
                   mean=[0.5] * 3, std=[0.25] * 3, **kwargs)
    model.configure_model()
    return model


def images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def recorded_logs(method) -> dict:
    logs: dict = {}
    method.log = lambda name, value, **kwargs: logs.__setitem__(name, (value, kwargs))
    return logs


def test_projection_head_layout() -> None:
    head = M.projection_head(6, 5, 3)
    assert [type(m) for m in head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert (head[0].in_features, head[0].out_features, head[0].bias) == (6, 5, None)
    assert head[1].num_features == 5 and head[2].inplace
    assert (head[3].in_features, head[3].out_features) == (5, 3) and head[3].bias is not None


def test_the_projector_sits_on_the_backbone_features() -> None:
    model = simclr(projection_dim=7)
    features = get_head(model.model.net)[1].in_features
    assert model.projector[0].in_features == features
    assert model.projector[0].out_features == features  # hidden size: the feature size
    assert model.projector[3].out_features == 7
    projector = model.projector
    model.configure_model()
    assert model.projector is projector  # built once
    assert simclr(projection_hidden_dim=5).projector[0].out_features == 5


def test_param_groups_leave_out_frozen_parameters() -> None:
    model = simclr()
    model.projector[3].bias.requires_grad_(False)
    ids = {id(p) for p in model.param_groups()}
    assert id(model.projector[3].bias) not in ids
    assert id(model.projector[3].weight) in ids
    assert len(ids) == sum(1 for m in (model.model, model.projector) for _ in m.parameters()) - 1


def test_views_are_two_fresh_augmentations_view_major() -> None:
    model = simclr()
    x = images(3)
    torch.manual_seed(2)
    views = model.views(x)
    torch.manual_seed(2)
    first, second = model.augmentation(x), model.augmentation(x)
    assert views.shape == (6, 3, 16, 16)
    torch.testing.assert_close(views, torch.cat([first, second]))
    assert not torch.allclose(first, second)


def test_training_loss_is_nt_xent_plus_the_probe_by_hand() -> None:
    model = simclr(temperature=0.3, projection_dim=8)
    logs = recorded_logs(model)
    x, y = images(4), torch.tensor([1, 2, 3, 4])
    torch.manual_seed(5)
    loss, logits = model.training_loss(x, None, y)
    torch.manual_seed(5)
    views = model.views(x)
    features = model.model.features(views)
    z = model.projector(features)
    contrastive = nt_xent(z[:4], z[4:], 0.3)
    probe_logits = get_head(model.model.net)[1](features[:4])
    probe = F.cross_entropy(probe_logits, y)
    torch.testing.assert_close(loss, contrastive + probe)
    torch.testing.assert_close(logits, probe_logits)
    torch.testing.assert_close(logs["train/nt_xent"][0], contrastive)
    assert logs["train/nt_xent"][1] == {"on_step": True, "on_epoch": True}
    torch.testing.assert_close(logs["train/probe_loss"][0], probe)
    assert logs["train/probe_loss"][1] == {"on_step": False, "on_epoch": True}
    assert not logs["train/nt_xent"][0].requires_grad


def test_contrastive_loss_returns_the_first_views_features() -> None:
    model = simclr()
    x = images(3)
    torch.manual_seed(1)
    _, features = model.contrastive_loss(x)
    torch.manual_seed(1)
    torch.testing.assert_close(features, model.model.features(model.views(x))[:3])


def test_validation_averages_the_eval_mode_contrastive_loss() -> None:
    model = simclr()
    logs = recorded_logs(model)
    x, y = images(4), torch.tensor([0, 1, 2, 3])
    model.train()
    with mock.patch.object(RobustClassifier, "validation_step") as base:
        torch.manual_seed(3)
        model.validation_step((x, y), 0)
    base.assert_called_once()
    assert model.model.training and model.projector.training  # modes restored
    assert logs["val/nt_xent"][0] is model.val_contrastive_loss
    assert logs["val/nt_xent"][1] == {"prog_bar": True}
    model.eval()
    torch.manual_seed(3)
    expected, _ = model.contrastive_loss(x)
    torch.testing.assert_close(model.val_contrastive_loss.compute(), expected)


def on_train_start(batch_size, world_size: int, gather: bool = True) -> None:
    model = simclr(gather_negatives=gather)
    model.log_dict = lambda *args, **kwargs: None
    loader = SimpleNamespace() if batch_size is None else SimpleNamespace(batch_size=batch_size)
    trainer = SimpleNamespace(train_dataloader=loader, world_size=world_size)
    with mock.patch.object(SimCLR, "trainer", new_callable=mock.PropertyMock,
                           return_value=trainer):
        model.on_train_start()


def test_one_image_per_batch_is_refused_with_the_whole_message() -> None:
    tail = (": the two views of one image are each other's only candidates, so NT-Xent and its "
            "gradient are exactly 0 and nothing trains; set data.init_args.batch_size >= 2 (the "
            "paper uses 256 to 8192)")
    with pytest.raises(ConfigurationError) as error:
        on_train_start(1, 1)
    assert str(error.value) == ("SimCLR needs at least 2 images per training batch, got "
                                "batch_size=1" + tail)
    with pytest.raises(ConfigurationError) as error:
        on_train_start(1, 2, gather=False)
    assert str(error.value) == ("SimCLR needs at least 2 images per training batch, got "
                                "batch_size=1 in each process (gather_negatives: false)" + tail)
    on_train_start(1, 2, gather=True)  # two images in all
    on_train_start(2, 1)
    on_train_start(None, 1)


# ---------------------------------------------------------------- DDP, scripted
def test_the_ddp_loss_averages_to_the_whole_batch_loss_and_gradients() -> None:
    """Two scripted processes with 3 of 6 images each: the gathered candidates and the offset
    make the mean of their losses the loss of the whole batch, gradients included."""
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 5, requires_grad=True), torch.randn(6, 5, requires_grad=True)
    model = simclr(temperature=0.4)
    losses = []
    for rank in (0, 1):
        local = slice(3 * rank, 3 * rank + 3)

        def gathered(tensor: torch.Tensor, rank: int = rank) -> torch.Tensor:
            parts = [torch.cat([z1[3 * r:3 * r + 3], z2[3 * r:3 * r + 3]]) for r in (0, 1)]
            parts[rank] = tensor
            return torch.cat(parts)

        with mock.patch.object(M, "rank_and_world_size", return_value=(rank, 2)), \
                mock.patch.object(M, "gather_with_grad", side_effect=gathered):
            losses.append(model.nt_xent(z1[local], z2[local]))
    whole = nt_xent(z1, z2, 0.4)
    torch.testing.assert_close((losses[0] + losses[1]) / 2, whole)
    grads = torch.autograd.grad((losses[0] + losses[1]) / 2, (z1, z2))
    for got, expected in zip(grads, torch.autograd.grad(whole, (z1, z2)), strict=True):
        torch.testing.assert_close(got, expected)
    alone = simclr(temperature=0.4, gather_negatives=False)
    with mock.patch.object(M, "rank_and_world_size", return_value=(1, 2)):
        torch.testing.assert_close(alone.nt_xent(z1[3:], z2[3:]), nt_xent(z1[3:], z2[3:], 0.4))


@pytest.mark.parametrize("rank", [0, 1])
def test_gather_with_grad_in_a_scripted_two_process_group(rank: int) -> None:
    """Rank ``rank`` of 2 with 2 rows of 3: forward puts the rows in rank order; backward sums
    the gradient with the other rank's and returns this rank's rows."""
    other = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mine = torch.tensor([[7.0, 8.0, 9.0], [10.0, 11.0, 12.0]], requires_grad=True)
    other_grad = torch.arange(18.0, 30.0).view(4, 3)

    def all_gather(parts, tensor):
        assert tensor.is_contiguous()
        parts[1 - rank].copy_(other)
        parts[rank].copy_(tensor)

    def all_reduce(grad):
        assert grad.is_contiguous()
        grad += other_grad

    dist = G.dist
    with mock.patch.object(G, "rank_and_world_size", return_value=(rank, 2)), \
            mock.patch.object(dist, "get_rank", return_value=rank), \
            mock.patch.object(dist, "get_world_size", return_value=2), \
            mock.patch.object(dist, "all_gather", side_effect=all_gather), \
            mock.patch.object(dist, "all_reduce", side_effect=all_reduce):
        out = G.gather_with_grad(mine.t().contiguous().t())  # a non-contiguous view
        parts = [other, mine.detach()] if rank == 1 else [mine.detach(), other]
        torch.testing.assert_close(out, torch.cat(parts))
        upstream = torch.arange(12.0).view(3, 4).t()  # non-contiguous
        (grad,) = torch.autograd.grad(out, mine, upstream)
    rows = slice(2 * rank, 2 * rank + 2)
    torch.testing.assert_close(grad, upstream[rows] + other_grad[rows])


def test_gather_with_grad_without_a_process_group_is_the_identity() -> None:
    tensor = torch.randn(3, 2)
    assert G.gather_with_grad(tensor) is tensor
