"""Grad-CAM explanations of the torch detectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dflab.detectors import create
from dflab.detectors.deep.torch_detector import grad_cam, last_convolution


class RedNet(nn.Module):
    """Logit = mean red intensity: the evidence is exactly where the picture is red."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, kernel_size=1, bias=False)
        self.head = nn.Linear(1, 1)
        # Set, not drawn: a head drawn negative (whatever ran before left the RNG there) turns the map off.
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1))
            self.head.weight.fill_(1.0)
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_grad_cam_finds_the_evidence():
    x = torch.zeros(1, 3, 16, 16)
    x[0, 0, 2:6, 9:14] = 1.0  # a red patch
    x[0, 1, 10:14, 2:6] = 1.0  # a green patch the logit ignores
    cam = grad_cam(RedNet(), x)
    assert cam.shape == (16, 16) and cam.max() == 1.0
    assert np.all(cam[2:6, 9:14] == 1.0) and np.all(cam[10:14, 2:6] == 0)


def test_grad_cam_is_the_gradient_weighted_feature_sum():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 1))
    x = torch.randn(1, 3, 12, 12)
    features = net[:3](x).detach().requires_grad_(True)
    logit = net[3:](features)
    (gradient,) = torch.autograd.grad(logit.sum(), features)
    expected = torch.relu((gradient.mean(dim=(2, 3))[0, :, None, None] * features[0]).sum(0)).detach().numpy()
    assert last_convolution(net) is net[2]
    np.testing.assert_allclose(grad_cam(net, x), expected / expected.max(), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_every_cnn_detector_explains_an_image_with_a_map_of_its_size():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    for name in ("efficientnet-lite0", "meso4", "efficientnet-lite0-st"):
        detector = create(name, pretrained=False, input_size=64, device="cpu") if "lite0" in name else \
            create(name, input_size=64, device="cpu")
        torch.manual_seed(0)
        detector.model_ = detector.build_model(pretrained=False).eval()
        heatmap = detector.explain(image)
        assert heatmap.shape == (70, 90) and heatmap.dtype == np.float32
        assert 0 <= heatmap.min() and heatmap.max() <= 1 and heatmap.max() > 0, name
