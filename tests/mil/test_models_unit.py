"""Model mechanics: shapes, masking, registry, Nyström attention, CLAM/DSMIL auxiliaries."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from slidestream.errors import ConfigError
from slidestream.mil import Targets, get_model, list_models
from slidestream.mil.models.nystrom import NystromAttention, iterative_pinv

SMALL = {"transmil": {"dim": 32, "heads": 4, "num_landmarks": 8}}


def test_registry_lists_every_model():
    assert set(list_models()) == {
        "mean_pool",
        "max_pool",
        "abmil",
        "abmil_gated",
        "clam_sb",
        "clam_mb",
        "transmil",
        "dsmil",
    }


def test_registry_rejects_unknown_names_and_options():
    with pytest.raises(ConfigError, match="unknown MIL model 'abmill'"):
        get_model("abmill", 8, 2)
    with pytest.raises(ConfigError, match="no option"):
        get_model("abmil", 8, 2, embed_dimm=3)
    model = get_model("clam_sb", 8, 2, k_sample=4)
    assert model.hparams == {"k_sample": 4}


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("n_classes", [1, 2, 3])
def test_padded_batch_equals_single_bags(name, n_classes):
    torch.manual_seed(0)
    model = get_model(name, 16, n_classes, **SMALL.get(name, {})).eval()
    x = torch.randn(3, 20, 16)
    mask = torch.ones(3, 20, dtype=torch.bool)
    mask[1, 13:] = False
    mask[2, 5:] = False
    with torch.no_grad():
        out = model(x, mask)
        assert out.logits.shape == (3, n_classes) and out.scores.shape == (3, 20)
        assert torch.all(out.scores[~mask] == 0)
        for b, n in enumerate((20, 13, 5)):
            single = model(x[b : b + 1, :n])
            torch.testing.assert_close(out.logits[b], single.logits[0], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(out.scores[b, :n], single.scores[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("n_tiles", [1, 2, 3, 17, 300])
def test_transmil_any_bag_size(n_tiles):
    model = get_model("transmil", 8, 2, **SMALL["transmil"]).eval()
    out = model(torch.randn(1, n_tiles, 8))
    assert out.logits.shape == (1, 2) and out.scores.shape == (1, n_tiles)
    assert torch.isfinite(out.scores).all()


def _exact_attention(att, x):
    b, n, _ = x.shape
    q, k, v = (
        t.reshape(b, n, att.heads, att.dim_head).transpose(1, 2)
        for t in att.to_qkv(x).chunk(3, dim=-1)
    )
    a = torch.softmax(q * att.scale @ k.transpose(-1, -2), dim=-1)
    out = att.to_out((a @ v).transpose(1, 2).reshape(b, n, -1))
    return out, a


def test_nystrom_is_exact_when_every_token_is_a_landmark():
    """With n == m landmarks, A·A⁺·A = A: exact once the pseudo-inverse has converged."""
    torch.manual_seed(0)
    att = NystromAttention(
        16, heads=2, dim_head=8, num_landmarks=12, pinv_iterations=40, residual_kernel=None
    ).eval()
    x = torch.randn(1, 12, 16)
    out, factors = att(x, keep_factors=True)
    ref, a = _exact_attention(att, x)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(factors.row(3), a[:, :, 3].mean(1), atol=1e-4, rtol=1e-3)


def test_nystrom_approximates_long_sequences():
    torch.manual_seed(0)
    att = NystromAttention(16, heads=2, dim_head=8, num_landmarks=16, residual_kernel=None).eval()
    x = torch.randn(1, 150, 16) * 0.5
    out, _ = att(x)
    ref, _ = _exact_attention(att, x)
    assert ((out - ref).norm() / ref.norm()).item() < 0.1


def test_iterative_pinv_inverts_well_conditioned_matrices():
    a = torch.softmax(torch.eye(6) * 4 + 0.1 * torch.randn(6, 6), dim=-1)
    torch.testing.assert_close(iterative_pinv(a, 20), torch.linalg.inv(a), atol=1e-4, rtol=1e-3)


def test_clam_instance_loss_uses_top_and_bottom_attention():
    torch.manual_seed(0)
    model = get_model("clam_sb", 8, 2, k_sample=2, instance_loss="ce").eval()
    x = torch.randn(1, 6, 8)
    out = model(x)
    h, a = out.extra["h"][0], out.extra["attention"][0, 0]
    top, bottom = a.topk(2).indices, (-a).topk(2).indices
    clf = model.instance_classifiers[1]
    expected = F.cross_entropy(clf(h[torch.cat([top, bottom])]), torch.tensor([1, 1, 0, 0]))
    got = model.auxiliary_loss(out, Targets(label=torch.tensor([1])), lambda z: z.sum())
    torch.testing.assert_close(got, expected)
    # bags smaller than 2 tiles have no bottom-k: no loss; survival targets: no loss
    assert model.auxiliary_loss(model(x[:, :1]), Targets(label=torch.tensor([1])), None) is None
    assert model.auxiliary_loss(out, Targets(time=torch.ones(1)), None) is None


def test_clam_subtyping_adds_out_of_class_terms():
    torch.manual_seed(0)
    model = get_model("clam_mb", 8, 3, k_sample=2, instance_loss="ce").eval()
    assert model.subtyping
    out = model(torch.randn(1, 10, 8))
    loss = model.auxiliary_loss(out, Targets(label=torch.tensor([2])), None)
    h, a = out.extra["h"][0], out.extra["attention"][0]
    total = 0
    for c in range(3):
        top = a[c].topk(2).indices
        if c == 2:
            idx = torch.cat([top, (-a[c]).topk(2).indices])
            target = torch.tensor([1, 1, 0, 0])
        else:
            idx, target = top, torch.tensor([0, 0])
        total = total + F.cross_entropy(model.instance_classifiers[c](h[idx]), target)
    torch.testing.assert_close(loss, total / 3)


def test_dsmil_critical_instance_and_max_stream_loss():
    torch.manual_seed(0)
    model = get_model("dsmil", 8, 2).eval()
    x = torch.randn(1, 9, 8)
    out = model(x)
    inst = model.instance_classifier(x)
    torch.testing.assert_close(out.extra["max_instance_logits"], inst.max(dim=1).values)
    y = torch.tensor([1])
    aux = model.auxiliary_loss(out, Targets(label=y), lambda z: F.cross_entropy(z, y))
    torch.testing.assert_close(aux, F.cross_entropy(inst.max(dim=1).values, y))
    # the critical instance of a class attends to itself the most
    crit = inst[0].argmax(dim=0)
    for c in range(2):
        assert out.extra["attention"][0, c].argmax() == crit[c]


def test_auxiliary_loss_weight_mixes_and_can_be_overridden():
    from slidestream.mil.tasks import ClassificationTask
    from slidestream.mil.train import training_loss

    torch.manual_seed(0)
    model = get_model("clam_sb", 8, 2, k_sample=2)
    task, targets = ClassificationTask(["0", "1"]), Targets(label=torch.tensor([1]))
    out = model(torch.randn(1, 6, 8))
    bag = task.loss(out.logits, targets)
    aux = model.auxiliary_loss(out, targets, lambda z: task.loss(z, targets))
    torch.testing.assert_close(
        training_loss(model, task, out, targets, None), 0.7 * bag + 0.3 * aux
    )
    torch.testing.assert_close(training_loss(model, task, out, targets, 0.0), bag)
