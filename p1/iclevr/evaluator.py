"""The Lab 6 evaluator (``evaluator.py``'s ``evaluation_model``), loadable without the lab's file.

The lab's judge is a torchvision ResNet18 (no pretrained weights) whose ``fc`` is
``Sequential(Linear(512, 24), Sigmoid())``: 24 independent object probabilities for a
(N, 3, 64, 64) image batch in [-1, 1] (``Normalize((0.5,)*3, (0.5,)*3)``). Its weights are the
lab's ``checkpoint.pth``: a dict whose key ``model`` holds the state dict. ``load_evaluator``
reads that file (or the stand-in trained by ``p1.iclevr.train_evaluator``) on CPU or GPU;
``Evaluator.eval`` scores a whole batch in one call exactly as the lab does, and
``Evaluator.guidance_gradient`` is the differentiable path for classifier guidance.
"""
import os
from collections import OrderedDict
from typing import Callable, Tuple, Union

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from p1.errors import UserError

NUM_CLASSES = 24
IMAGE_SIZE = 64
HOW_TO_GET = ("put the lab's checkpoint.pth there, or train the stand-in with "
              "python3 -m p1.iclevr.train_evaluator")


def build_resnet18_evaluator() -> nn.Module:
    """The lab's network, untrained: ResNet18 with ``fc = Sequential(Linear(512, 24), Sigmoid())``.

    (N, 3, 64, 64) in [-1, 1] -> probabilities (N, 24). The state-dict keys are torchvision's
    resnet18 keys with ``fc.0.weight`` and ``fc.0.bias`` for the head.
    """
    network = torchvision.models.resnet18()  # no weights on torchvision 0.12 and on current
    network.fc = nn.Sequential(nn.Linear(512, NUM_CLASSES), nn.Sigmoid())
    return network


def resnet18_logits(network: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The head's pre-sigmoid outputs (N, 24): torchvision's ResNet forward up to ``fc.0``.

    ``torch.sigmoid`` of them is exactly ``network(images)``; they give numerically stable
    log-probabilities (``F.logsigmoid``) and the BCE-with-logits training loss.
    """
    x = network.maxpool(network.relu(network.bn1(network.conv1(images))))
    x = network.layer4(network.layer3(network.layer2(network.layer1(x))))
    return network.fc[0](torch.flatten(network.avgpool(x), 1))


def count_hits(probs: torch.Tensor, labels: torch.Tensor) -> Tuple[int, int]:
    """(hits, true labels) of the lab's ``compute_acc`` for probs (N, 24) and multi-hot (N, 24).

    Per image, k = number of true objects; the k highest probabilities are the prediction and
    each one that is a true object is a hit. Like the lab, the true set is ``labels.topk(k)``
    (the ones of a 0/1 vector). Ties between probabilities are broken by ``torch.topk``
    (no documented order); with float sigmoid outputs they do not happen in practice.
    """
    probs, labels = probs.detach().float().cpu(), labels.detach().float().cpu()
    if probs.shape != labels.shape or probs.dim() != 2:
        raise ValueError(f"probs {tuple(probs.shape)} and labels {tuple(labels.shape)} must "
                         "both be (N, classes)")
    hits = total = 0
    for prob, label in zip(probs, labels):
        k = int(label.sum().item())
        total += k
        predicted = set(prob.topk(k).indices.tolist())
        hits += len(predicted & set(label.topk(k).indices.tolist()))
    return hits, total


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The lab's accuracy of a batch: total hits / total true labels (micro), see count_hits."""
    hits, total = count_hits(probs, labels)
    if total == 0:
        raise ValueError("accuracy of a batch without any true label is undefined")
    return hits / total


class Evaluator:
    """The lab's judge around a frozen, eval-mode ResNet18 (BatchNorm uses running stats).

    Images are (N, 3, H, W) in [-1, 1]; another size than 64x64 is resized bilinearly (the
    lab asks for outputs resized to 64x64). Labels are multi-hot (N, 24).
    """

    def __init__(self, network: nn.Module):
        self.resnet18 = network.eval()
        for parameter in self.resnet18.parameters():
            parameter.requires_grad_(False)
        self.device = next(self.resnet18.parameters()).device

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, torch.float32)
        if images.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            images = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                                   align_corners=False)
        return images

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid outputs (N, 24); differentiable with respect to ``images``."""
        return resnet18_logits(self.resnet18, self._prepare(images))

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """The lab's network output (N, 24) in [0, 1]; differentiable."""
        return self.resnet18.fc[1](self.logits(images))

    def eval(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """The lab's ``evaluation_model.eval``: accuracy of the whole batch in one call."""
        with torch.no_grad():
            return accuracy(self.probabilities(images), labels)

    def log_likelihood(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N,) sum over classes of y log p + (1 - y) log(1 - p); differentiable.

        Computed as y logsigmoid(z) + (1 - y) logsigmoid(-z) from the logits z: the same
        value, finite and with a useful gradient even where p rounds to 0 or 1 in float32.
        """
        logits = self.logits(images)
        labels = labels.to(logits.device, logits.dtype)
        return (labels * F.logsigmoid(logits) + (1 - labels) * F.logsigmoid(-logits)).sum(1)

    def guidance_gradient(self, labels: torch.Tensor
                          ) -> Callable[[torch.Tensor], torch.Tensor]:
        """Function x0 (B, 3, H, W) -> d log_likelihood(x0, labels) / d x0, same shape.

        For classifier guidance: the sampler passes its clean-image estimate; the gradient is
        taken with grad enabled (so it works inside a no_grad sampler) on a detached float32
        copy, and returned in the input's dtype and device.
        """
        def gradient(x0: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                x = x0.detach().to(torch.float32).requires_grad_(True)
                (grad,) = torch.autograd.grad(self.log_likelihood(x, labels).sum(), x)
            return grad.to(x0.dtype)

        return gradient


def load_evaluator(path: str, device: Union[str, torch.device]) -> Evaluator:
    """Evaluator from the lab's checkpoint format ``{"model": resnet18 state dict}``.

    Loaded on the CPU, checked key by key and shape by shape, then moved to ``device``. Every
    problem is a one-line UserError.
    """
    if not os.path.isfile(path):
        raise UserError(f"no evaluator checkpoint at {path}; {HOW_TO_GET}")
    try:
        checkpoint = torch.load(path, map_location="cpu")
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot read evaluator checkpoint {path}: {reason}") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise UserError(f"{path} is not an evaluator checkpoint: expected a dict whose key "
                        "'model' holds the ResNet18 state dict")
    state = checkpoint["model"]
    network = build_resnet18_evaluator()
    expected = network.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
        raise UserError(f"{path} does not hold the lab's ResNet18 evaluator: "
                        + ", ".join(parts))
    for key, reference in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or value.shape != reference.shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise UserError(f"{path}: {key} has shape {shape}, expected "
                            f"{tuple(reference.shape)}")
    network.load_state_dict(state, strict=True)
    return Evaluator(network.to(torch.device(device)))


def save_lab_checkpoint(model: nn.Module, path: str) -> None:
    """Write ``{"model": state dict}`` (the lab's format, CPU tensors) to path atomically."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    state = OrderedDict((key, value.detach().cpu()) for key, value in model.state_dict().items())
    temporary = path + ".tmp"
    try:
        torch.save({"model": state}, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
