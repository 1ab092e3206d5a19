"""EfficientNet-Lite0 (ImageNet-1k classifier) as a plain numpy forward pass, CPU only.

Why numpy: the pretrained weights come as a PyTorch checkpoint (see weights.py) and torch is not
an option here; the network is small (4.7M parameters, ~0.4 GFLOPs at 224x224) and made only of
1x1 convolutions (matrix products, done by numpy's BLAS), depthwise convolutions (a few shifted
multiply-adds) and ReLU6, so numpy runs it in tens of milliseconds per image.

The architecture is EfficientNet-Lite0 as Google defined it (efficientnet/lite/
efficientnet_lite_builder.py), which the checkpoint's key names and shapes follow:
- stem: 3x3 conv stride 2, 32 channels, batch norm, ReLU6;
- 16 MBConv blocks in 7 stages (table STAGES below), no squeeze-and-excitation (Lite drops it),
  ReLU6 instead of swish; expansion (1x1) -> depthwise (kxk, stride s) -> projection (1x1, linear);
  the residual is added on every block of a stage but its first (same shape in and out);
- head: 1x1 conv to 1280 channels, batch norm, ReLU6, global average pool, fully connected to 1000.
Convolutions pad like TensorFlow's 'SAME' (the weights were trained in TF): output size
ceil(in/stride), with the odd pixel of padding at the bottom/right.
Batch norms (eps 1e-3, TF's) are folded into the preceding convolution at load time.
Inputs are RGB in 0..255 normalised as (x - 127) / 128, Lite's training preprocessing.
"""

from __future__ import annotations

import numpy as np

BN_EPS = 1e-3
MEAN_RGB = 127.0
STDDEV_RGB = 128.0
IMAGE_SIZE = 224
NUM_CLASSES = 1000

# (repeats, kernel, stride of the first block, expand ratio, input channels, output channels)
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


def _fold(state, conv, bn):
    """Conv weight (O, I, kh, kw) and its batch norm -> (weight scaled per output channel, bias)."""
    weight = state[f"{conv}.weight"].astype(np.float32)
    gamma, beta = state[f"{bn}.weight"], state[f"{bn}.bias"]
    mean, var = state[f"{bn}.running_mean"], state[f"{bn}.running_var"]
    scale = gamma / np.sqrt(var + BN_EPS)
    return weight * scale[:, None, None, None], (beta - mean * scale).astype(np.float32)


def fold_checkpoint(state: dict) -> dict:
    """The checkpoint's state dict -> the arrays forward() uses, laid out for NHWC numpy math.

    Keys: stem.w (27, 32) im2col matrix, stem.b; b{i}.expand.w (Cin, Cout) / .b, b{i}.dw.w
    (k, k, C) / .b, b{i}.project.w / .b; head.w / .b; fc.w (1280, 1000), fc.b.
    """
    params = {}
    w, b = _fold(state, "_conv_stem", "_bn0")
    params["stem.w"] = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0]))  # (kh, kw, in) x out
    params["stem.b"] = b
    index = 0
    for repeats, kernel, _stride, expand, _cin, _cout in STAGES:
        for _ in range(repeats):
            prefix = f"_blocks.{index}."
            if expand != 1:
                w, b = _fold(state, prefix + "_expand_conv", prefix + "_bn0")
                params[f"b{index}.expand.w"], params[f"b{index}.expand.b"] = np.ascontiguousarray(w[:, :, 0, 0].T), b
            w, b = _fold(state, prefix + "_depthwise_conv", prefix + "_bn1")
            if w.shape[2:] != (kernel, kernel):
                raise ValueError(f"block {index}: depthwise kernel {w.shape[2:]}, expected {kernel}x{kernel}")
            params[f"b{index}.dw.w"], params[f"b{index}.dw.b"] = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0)), b
            w, b = _fold(state, prefix + "_project_conv", prefix + "_bn2")
            params[f"b{index}.project.w"], params[f"b{index}.project.b"] = np.ascontiguousarray(w[:, :, 0, 0].T), b
            index += 1
    if f"_blocks.{index}._project_conv.weight" in state:
        raise ValueError(f"checkpoint has more than {index} blocks: not EfficientNet-Lite0")
    w, b = _fold(state, "_conv_head", "_bn1")
    params["head.w"], params["head.b"] = np.ascontiguousarray(w[:, :, 0, 0].T), b
    params["fc.w"] = np.ascontiguousarray(state["_fc.weight"].astype(np.float32).T)
    params["fc.b"] = state["_fc.bias"].astype(np.float32)
    if params["fc.w"].shape != (1280, NUM_CLASSES):
        raise ValueError(f"classifier is {params['fc.w'].shape}, expected (1280, {NUM_CLASSES})")
    return params


def _same_pad(x, kernel, stride):
    """Pad (N, H, W, C) like TF 'SAME'; returns the padded array and the output height and width."""
    height, width = x.shape[1:3]
    out_h, out_w = -(-height // stride), -(-width // stride)
    pad_h = max((out_h - 1) * stride + kernel - height, 0)
    pad_w = max((out_w - 1) * stride + kernel - width, 0)
    if pad_h or pad_w:
        x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    return x, out_h, out_w


def _relu6(x):
    return np.clip(x, 0.0, 6.0, out=x)


def _pointwise(x, w, b):
    """A 1x1 convolution over the whole batch: one matrix product of (N*H*W, Cin) by (Cin, Cout)."""
    batch, height, width, channels = x.shape
    out = x.reshape(-1, channels) @ w
    out += b
    return out.reshape(batch, height, width, -1)


def _depthwise(x, w, b, stride):
    kernel = w.shape[0]
    padded, out_h, out_w = _same_pad(x, kernel, stride)
    out = np.empty((x.shape[0], out_h, out_w, x.shape[3]), np.float32)
    out[:] = b
    span_h, span_w = (out_h - 1) * stride + 1, (out_w - 1) * stride + 1
    for dy in range(kernel):
        for dx in range(kernel):
            out += padded[:, dy:dy + span_h:stride, dx:dx + span_w:stride] * w[dy, dx]
    return out


def forward_batch(params: dict, images: np.ndarray) -> np.ndarray:
    """Logits (N, 1000) for a batch of normalised images (N, H, W, 3) float32 of one size (trained at 224x224).

    One pass for the whole batch: each layer is one operation over all N images (the 1x1
    convolutions, most of the work, one matrix product each), not N passes.
    """
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[3] != 3:
        raise ValueError(f"expected images of shape (N, H, W, 3), got {x.shape}")
    padded, out_h, out_w = _same_pad(x, 3, 2)
    span_h, span_w = (out_h - 1) * 2 + 1, (out_w - 1) * 2 + 1
    cols = np.concatenate(
        [padded[:, dy:dy + span_h:2, dx:dx + span_w:2] for dy in range(3) for dx in range(3)], axis=3
    )  # (N, out_h, out_w, 27) in (kh, kw, in) order, matching stem.w
    x = _relu6(_pointwise(cols, params["stem.w"], params["stem.b"]))
    index = 0
    for repeats, _kernel, stride, expand, _cin, _cout in STAGES:
        for repeat in range(repeats):
            shortcut = x
            if expand != 1:
                x = _relu6(_pointwise(x, params[f"b{index}.expand.w"], params[f"b{index}.expand.b"]))
            x = _relu6(_depthwise(x, params[f"b{index}.dw.w"], params[f"b{index}.dw.b"], stride if repeat == 0 else 1))
            x = _pointwise(x, params[f"b{index}.project.w"], params[f"b{index}.project.b"])
            if repeat > 0:  # same shape in and out: identity shortcut
                x += shortcut
            index += 1
    x = _relu6(_pointwise(x, params["head.w"], params["head.b"]))
    features = x.mean(axis=(1, 2))
    return features @ params["fc.w"] + params["fc.b"]


def forward(params: dict, image: np.ndarray) -> np.ndarray:
    """Logits (1000,) for one normalised image (H, W, 3) float32 (any size; trained at 224x224)."""
    return forward_batch(params, np.asarray(image, np.float32)[None])[0]


def normalize(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> the float32 input forward() expects."""
    return (np.asarray(rgb, np.float32) - MEAN_RGB) / STDDEV_RGB
