import pytest
import torch
import torch.nn.functional as F
import torchvision

from p1.errors import UserError
from p1.iclevr.evaluator import (
    Evaluator,
    accuracy,
    build_resnet18_evaluator,
    count_hits,
    load_evaluator,
    resnet18_logits,
    save_lab_checkpoint,
)


def random_network(seed: int = 0) -> torch.nn.Module:
    """The lab's network with random weights and non-trivial BatchNorm running statistics."""
    torch.manual_seed(seed)
    network = build_resnet18_evaluator()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return network.eval()


def images(n: int = 3, size: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def multi_hot(*sets) -> torch.Tensor:
    labels = torch.zeros(len(sets), 24)
    for row, classes in enumerate(sets):
        labels[row, list(classes)] = 1
    return labels


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator(random_network())


def test_state_dict_keys_are_torchvision_resnet18_with_lab_head():
    keys = list(build_resnet18_evaluator().state_dict())
    reference = [key.replace("fc.", "fc.0.") for key in torchvision.models.resnet18().state_dict()]
    assert keys == reference and len(keys) == 122
    for key in ["conv1.weight", "bn1.running_var", "layer4.1.bn2.num_batches_tracked",
                "fc.0.weight", "fc.0.bias"]:
        assert key in keys
    assert build_resnet18_evaluator().state_dict()["fc.0.weight"].shape == (24, 512)


def test_probabilities_are_the_network_output(evaluator):
    x = images()
    with torch.no_grad():
        expected = evaluator.resnet18(x)
    assert evaluator.probabilities(x).shape == (3, 24)
    assert torch.allclose(evaluator.probabilities(x), expected, atol=1e-6)
    assert torch.allclose(torch.sigmoid(resnet18_logits(evaluator.resnet18, x)), expected,
                          atol=1e-6)


def test_round_trip_gives_identical_outputs(tmp_path):
    network = random_network(seed=3)
    path = str(tmp_path / "sub" / "checkpoint.pth")
    save_lab_checkpoint(network, path)
    assert list(torch.load(path)) == ["model"]
    assert list(tmp_path.joinpath("sub").iterdir()) == [tmp_path / "sub" / "checkpoint.pth"]
    loaded = load_evaluator(path, "cpu")
    x = images()
    assert torch.equal(loaded.probabilities(x), Evaluator(network).probabilities(x))
    assert not loaded.resnet18.training
    assert not any(p.requires_grad for p in loaded.resnet18.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loads_on_cuda(tmp_path):
    path = str(tmp_path / "checkpoint.pth")
    save_lab_checkpoint(random_network(), path)
    evaluator = load_evaluator(path, "cuda")
    assert evaluator.probabilities(images()).device.type == "cuda"


def bad_checkpoint(tmp_path, content) -> str:
    path = tmp_path / "bad.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    return str(path)


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    state = build_resnet18_evaluator().state_dict()
    missing = dict(state)
    del missing["fc.0.bias"]
    unexpected = dict(state, extra=torch.zeros(1))
    wrong_shape = dict(state)
    wrong_shape["fc.0.weight"] = torch.zeros(10, 512)
    old_head = {key.replace("fc.0.", "fc."): value for key, value in state.items()}
    cases = [
        (b"this is not a checkpoint", "cannot read evaluator checkpoint"),
        ({"state_dict": state}, "expected a dict whose key 'model'"),
        (torch.zeros(3), "expected a dict whose key 'model'"),
        ({"model": missing}, "1 missing keys \\(first: fc.0.bias\\)"),
        ({"model": unexpected}, "1 unexpected keys \\(first: extra\\)"),
        ({"model": old_head}, "2 missing keys \\(first: fc.0.weight\\), 2 unexpected keys"),
        ({"model": wrong_shape}, "fc.0.weight has shape \\(10, 512\\), expected \\(24, 512\\)"),
    ]
    for content, message in cases:
        with pytest.raises(UserError, match=message) as caught:
            load_evaluator(bad_checkpoint(tmp_path, content), "cpu")
        assert "\n" not in str(caught.value)
    with pytest.raises(UserError, match="no evaluator checkpoint at .*train_evaluator"):
        load_evaluator(str(tmp_path / "absent.pth"), "cpu")


def test_accuracy_on_hand_made_cases():
    probs = torch.full((3, 24), 0.1)
    probs[0, 3] = 0.9                      # one object, right: 1/1
    probs[1, [0, 7]] = torch.tensor([0.8, 0.9])   # {0, 5}: top-2 is {7, 0}: 1/2
    probs[2, [1, 2, 4]] = 0.95             # {8, 9, 10}: none in the top 3: 0/3
    labels = multi_hot([3], [0, 5], [8, 9, 10])
    assert count_hits(probs[:1], labels[:1]) == (1, 1)
    assert count_hits(probs[1:2], labels[1:2]) == (1, 2)
    assert accuracy(probs[1:2], labels[1:2]) == 0.5
    assert count_hits(probs, labels) == (2, 6)
    assert accuracy(probs, labels) == pytest.approx(2 / 6)
    # a wrong object only hurts when it outranks a true one
    probs = torch.tensor([[0.9, 0.2, 0.8] + [0.0] * 21])
    assert accuracy(probs, multi_hot([0, 2])) == 1.0
    assert accuracy(probs, multi_hot([0, 1])) == 0.5
    with pytest.raises(ValueError, match="without any true label"):
        accuracy(probs, torch.zeros(1, 24))


def test_eval_is_accuracy_of_probabilities_in_one_call(evaluator):
    x = images(4)
    labels = multi_hot([1], [2, 3], [4, 5, 6], [7, 8, 9])
    expected = accuracy(evaluator.probabilities(x).detach(), labels)
    assert evaluator.eval(x, labels) == expected
    assert expected * 9 == round(expected * 9)


def test_log_likelihood_matches_the_probability_formula(evaluator):
    x, labels = images(2), multi_hot([0, 9], [22])
    p = evaluator.probabilities(x).clamp(1e-6, 1 - 1e-6)
    expected = (labels * p.log() + (1 - labels) * (1 - p).log()).sum(1)
    assert torch.allclose(evaluator.log_likelihood(x, labels), expected, atol=1e-3)


def test_guidance_gradient_ascends_the_log_likelihood(evaluator):
    x, labels = images(2), multi_hot([9, 22, 6], [0])
    gradient = evaluator.guidance_gradient(labels)
    with torch.no_grad():
        grad = gradient(x)
    assert grad.shape == x.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0
    step = x + 1e-2 * grad / grad.abs().amax()
    with torch.no_grad():
        before = evaluator.log_likelihood(x, labels)
        after = evaluator.log_likelihood(step, labels)
    assert (after > before).all()
    assert not x.requires_grad


def test_other_sizes_are_resized_bilinearly(evaluator):
    small = images(2, size=32)
    resized = F.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.equal(evaluator.probabilities(small), evaluator.probabilities(resized))
    grad = evaluator.guidance_gradient(multi_hot([1], [2]))(small)
    assert grad.shape == small.shape
