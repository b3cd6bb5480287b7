"""Max-pooling as MTCNN's networks need it, computed faster on a CPU with the same maxima."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class StridedMaxPool(nn.Module):
    """``MaxPool2d(kernel, stride, ceil_mode=True)`` as the element-wise maximum of kernel x kernel
    strided views of the input: the same maxima bit for bit (a maximum does not round). PyTorch's CPU
    max-pooling of NCHW tensors walks window by window; on the maps of MTCNN's first layers these
    k*k vectorised passes take a half to a fifth of its time (benchmarks/RESULTS.md)."""

    def __init__(self, kernel_size: int, stride: int):
        super().__init__()
        self.kernel, self.stride = int(kernel_size), int(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, stride = self.kernel, self.stride
        height, width = x.shape[-2:]
        if height < kernel or width < kernel or stride > kernel:
            return F.max_pool2d(x, kernel, stride, ceil_mode=True)
        # ceil_mode: a last window that starts inside the map and runs past its edge counts.
        out_h, out_w = -(-(height - kernel) // stride) + 1, -(-(width - kernel) // stride) + 1
        pad_h, pad_w = (out_h - 1) * stride + kernel - height, (out_w - 1) * stride + kernel - width
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), value=float("-inf"))
        span_h, span_w = (out_h - 1) * stride + 1, (out_w - 1) * stride + 1
        out = None
        for dy in range(kernel):
            for dx in range(kernel):
                view = x[..., dy:dy + span_h:stride, dx:dx + span_w:stride]
                out = view.clone() if out is None else torch.maximum(out, view, out=out)
        return out


def strided_max_pools(net: nn.Module) -> nn.Module:
    """``net`` with its direct ``MaxPool2d(k, s, ceil_mode=True)`` layers (no padding, no dilation)
    replaced by :class:`StridedMaxPool`."""
    for name, layer in list(net.named_children()):
        if isinstance(layer, nn.MaxPool2d) and layer.ceil_mode and layer.padding == 0 and layer.dilation == 1:
            kernel = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
            stride = layer.stride if isinstance(layer.stride, int) else layer.stride[0]
            setattr(net, name, StridedMaxPool(kernel, stride))
    return net
