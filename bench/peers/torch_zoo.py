#!/usr/bin/env python3
"""PyTorch peer for Mercury's model-zoo benchmark: the same models, batches and optimizer.

Rebuilds every model of Mercury's zoo (models/*.hpp, listed by models/registry.hpp) in PyTorch,
layer for layer and parameter for parameter, and measures training or scoring throughput and
peak memory on synthetic batches of the paper's workloads (bench/micro/bench_models.cpp):

  model           sample         classes  batch   notes
  cnn, mlp        [1, 28, 28]    10       64
  resnet8/20/18   [3, 32, 32]    10       32      CIFAR stem, projection ("option B") shortcuts
  resnet50        [3, 32, 32]    100      32      Bottleneck v1.5 (stride on the 3x3)
  mobilenetv2     [3, 64, 64]    30       32      width 1, CIFAR strides (stem and stage 2 at 1)
  vgg13, ds_cnn   [1, 161, 101]  35       64      vgg13: BN, conv bias, GAP + one Linear
  lstm_attention  [100] ids      4        64      vocab 20,000, padding id 0
  textcnn         [100] ids      4        64      vocab 20,000, padding id 0

Usage
  torch_zoo.py --model NAME --mode train|score [--batch B] [--steps N | --seconds S]
               [--threads T] [--sample C,H,W | --sample T] [--classes K] [--vocab V] [--seed S]
               [--width W (mobilenetv2)] [--ds-size s|m (ds_cnn)] [--check-params N]
  torch_zoo.py --list     # every model's parameter count against the expected figure, exit 1
                          # on any mismatch (the figures of tests/unit/test_models.cpp)

Steps
- train: model.train(); opt.zero_grad(set_to_none=True); per-sample cross-entropy
  (reduction='none').mean().backward(); torch.optim.Adam step with lr 1e-3 and Mercury's
  OptimizerConfig defaults (betas (0.9, 0.999), eps 1e-8, no weight decay).
- score: model.eval(); under torch.no_grad(), the per-sample cross-entropy of a batch.
- Data: a pool of 16 distinct batches (images standard normal; token ids uniform in
  1..vocab-1; labels uniform over the classes) drawn from a torch.Generator seeded by --seed,
  cycled through — one repeated batch lets PyTorch over-fit it into denormals, which slows it.
- Timing: torch.set_num_threads(T); 3 warm-up steps, then --steps N steps exactly, or as many
  steps as fit in --seconds (default 5); samples/s = steps * batch / elapsed.

Output: ONE JSON line
  {"peer": "torch", "torch_version", "model", "mode", "batch", "sample", "classes", "params",
   "threads", "samples_per_s", "peak_rss_mib", "base_rss_mib", "malloc_env", ...}
where peak_rss_mib is getrusage(RUSAGE_SELF).ru_maxrss (the whole process's peak) and
base_rss_mib is VmRSS after the imports, the model, the optimizer and the data pool were created
and before the first step: the difference is what the steps themselves (activations, gradients,
Adam moments, allocator caches) add. data_pool_mib is the pool's own size.

Memory allocator: PyTorch on CPU only runs at its best with glibc's malloc thresholds pinned,
  MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=134217728
in the environment of the process (glibc reads them at start-up, so they cannot be set from
inside the script). Otherwise glibc's dynamic mmap threshold keeps serving large activations
with fresh mmap()s that are returned to the kernel on free, and every step page-faults each large
activation anew. The script warns on stderr when they are not set (it does not fail) and reports
their values in "malloc_env".

Exit status: 0 success; 1 --check-params or --list mismatch; 2 bad arguments (the message names
what was expected and what was found); 3 PyTorch is not installed (Debian: python3-torch; use
the interpreter that has it, e.g. /usr/bin/python3).
"""
import argparse
import json
import os
import resource
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("torch_zoo.py: PyTorch is not installed (apt-get install python3-torch, or run it with "
          "the interpreter that has torch, e.g. /usr/bin/python3)", file=sys.stderr)
    sys.exit(3)

POOL_BATCHES = 16
WARMUP_STEPS = 3
MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
MALLOC_ADVICE = "MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=134217728"

# Mercury's optim::OptimizerConfig defaults (mercury/optim/optimizer.hpp) and the bench's lr.
ADAM_LR, ADAM_BETAS, ADAM_EPS = 1e-3, (0.9, 0.999), 1e-8


# ---- building blocks (models/blocks.hpp) ------------------------------------------------------

def conv(in_ch, out_ch, kernel, stride=1, groups=1, bias=False):
    """The zoo's conv: 'same' padding k // 2, no bias unless asked, Kaiming normal fan-out."""
    c = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups,
                  bias=bias)
    nn.init.kaiming_normal_(c.weight, mode="fan_out", nonlinearity="relu")
    return c


def bn(ch):
    return nn.BatchNorm2d(ch, eps=1e-5, momentum=0.1)  # γ = 1, β = 0 (PyTorch's init = ours)


class ConvBnAct(nn.Sequential):
    """conv → BN → optional activation; children 0, 1[, 2] (torchvision's Conv2dNormActivation)."""

    def __init__(self, in_ch, out_ch, kernel, stride=1, groups=1, act=None):
        layers = [conv(in_ch, out_ch, kernel, stride, groups), bn(out_ch)]
        if act is not None:
            layers.append(act)
        super().__init__(*layers)


class BasicBlock(nn.Module):
    """3x3 (stride s) + BN + ReLU → 3x3 + BN, + identity or 1x1 + BN projection, → ReLU."""
    expansion = 1

    def __init__(self, in_ch, planes, stride):
        super().__init__()
        self.conv1, self.bn1 = conv(in_ch, planes, 3, stride), bn(planes)
        self.conv2, self.bn2 = conv(planes, planes, 3), bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != planes:
            self.downsample = nn.Sequential(conv(in_ch, planes, 1, stride), bn(planes))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 → 3x3 stride s ("v1.5") → 1x1 (4·planes), BN after each, projection where needed."""
    expansion = 4

    def __init__(self, in_ch, planes, stride):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1, self.bn1 = conv(in_ch, planes, 1), bn(planes)
        self.conv2, self.bn2 = conv(planes, planes, 3, stride), bn(planes)
        self.conv3, self.bn3 = conv(planes, out_ch, 1), bn(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(conv(in_ch, out_ch, 1, stride), bn(out_ch))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class InvertedResidual(nn.Module):
    """[1x1 expand + BN + ReLU6 if t != 1] → 3x3 depthwise + BN + ReLU6 → 1x1 + BN (linear);
    residual iff stride 1 and in == out. Names as torchvision (conv.0.0, ..., conv.2/.3)."""

    def __init__(self, in_ch, out_ch, stride, expand_ratio):
        super().__init__()
        hidden = in_ch * expand_ratio
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBnAct(in_ch, hidden, 1, act=nn.ReLU6(inplace=True)))
        layers += [ConvBnAct(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6(inplace=True)),
                   conv(hidden, out_ch, 1), bn(out_ch)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise (stride s) + BN + ReLU, 1x1 pointwise + BN + ReLU (names dw, dw_bn, pw, pw_bn)."""

    def __init__(self, in_ch, out_ch, stride):
        super().__init__()
        self.dw, self.dw_bn = conv(in_ch, in_ch, 3, stride, groups=in_ch), bn(in_ch)
        self.pw, self.pw_bn = conv(in_ch, out_ch, 1), bn(out_ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.pw_bn(self.pw(self.relu(self.dw_bn(self.dw(x))))))


class GlobalAvgPool(nn.Module):
    """[N, C, H, W] → [N, C] (Mercury's GlobalAvgPool: pooling and flattening in one)."""

    def forward(self, x):
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


# ---- models (models/*.hpp) --------------------------------------------------------------------

class CNN(nn.Module):
    """models/cnn.hpp make_cnn: conv5x5(C→32)+ReLU+maxpool2, conv5x5(32→64)+ReLU+maxpool2,
    Linear(64·h·w → 128)+ReLU, Linear(128 → K). Convs with bias, PyTorch default init."""

    def __init__(self, sample, classes):
        super().__init__()
        c, h, w = sample
        fh, fw = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
        self.conv1 = nn.Conv2d(c, 32, 5)
        self.conv2 = nn.Conv2d(32, 64, 5)
        self.fc1 = nn.Linear(64 * fh * fw, 128)
        self.fc2 = nn.Linear(128, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x), inplace=True), 2)
        x = F.max_pool2d(F.relu(self.conv2(x), inplace=True), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)
        return self.fc2(x)


class MLP(nn.Module):
    """models/cnn.hpp make_mlp: Flatten, Linear(in→256)+ReLU, Linear(256→128)+ReLU, Linear(→K)."""

    def __init__(self, sample, classes):
        super().__init__()
        n = 1
        for d in sample:
            n *= d
        self.fc1, self.fc2, self.fc3 = nn.Linear(n, 256), nn.Linear(256, 128), nn.Linear(128, classes)

    def forward(self, x):
        x = F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)
        return self.fc3(F.relu(self.fc2(x), inplace=True))


class ResNet(nn.Module):
    """models/resnet.hpp: conv3x3(C→stem, s1) + BN + ReLU (no max-pool), stages of blocks with
    strides 1, 2, 2[, 2], GAP, Linear. Names as torchvision (conv1, bn1, layerK.J.*, fc)."""

    def __init__(self, sample, classes, block, stem, blocks, planes):
        super().__init__()
        self.conv1, self.bn1 = conv(sample[0], stem, 3), bn(stem)
        self.relu = nn.ReLU(inplace=True)
        in_ch = stem
        for s, (n, p) in enumerate(zip(blocks, planes)):
            layer = []
            for b in range(n):
                layer.append(block(in_ch, p, 2 if (s > 0 and b == 0) else 1))
                in_ch = p * block.expansion
            setattr(self, "layer%d" % (s + 1), nn.Sequential(*layer))
        self.stages = len(blocks)
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(in_ch, classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        for s in range(self.stages):
            x = getattr(self, "layer%d" % (s + 1))(x)
        return self.fc(self.pool(x))


def make_divisible(v, divisor=8):
    """torchvision's _make_divisible (models/mobilenetv2.hpp make_divisible)."""
    r = max(divisor, int(v + divisor / 2.0) // divisor * divisor)
    return r + divisor if r < 0.9 * v else r


class MobileNetV2(nn.Module):
    """models/mobilenetv2.hpp: torchvision's mobilenet_v2 with width multiplier; CIFAR strides
    (default) put the stem and the first stride-2 stage (t=6, c=24) at stride 1. features.18 is
    conv1x1 → 1280 + BN + ReLU6; GAP; classifier = Dropout(0.2), Linear."""

    def __init__(self, sample, classes, width=1.0, cifar_strides=True, dropout=0.2):
        super().__init__()
        s_small = 1 if cifar_strides else 2
        table = [(1, 16, 1, 1), (6, 24, 2, s_small), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                 (6, 160, 3, 2), (6, 320, 1, 1)]
        in_ch = make_divisible(32 * width)
        feats = [ConvBnAct(sample[0], in_ch, 3, s_small, act=nn.ReLU6(inplace=True))]
        for t, c, n, s in table:
            out_ch = make_divisible(c * width)
            for i in range(n):
                feats.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t))
                in_ch = out_ch
        last = make_divisible(1280 * max(1.0, width))
        feats.append(ConvBnAct(in_ch, last, 1, act=nn.ReLU6(inplace=True)))
        self.features = nn.Sequential(*feats)
        self.pool = GlobalAvgPool()
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, classes))

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))


class VGG13(nn.Module):
    """models/vgg.hpp: vgg13_bn features (conv3x3 pad 1 WITH bias + BN + ReLU, 2x2 max-pools),
    then global average pool and ONE Linear(512 → K) (not torchvision's 7x7 pool + 3 Linears)."""

    CFG = [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]

    def __init__(self, sample, classes):
        super().__init__()
        layers, in_ch = [], sample[0]
        for c in self.CFG:
            if c == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers += [conv(in_ch, c, 3, bias=True), bn(c), nn.ReLU(inplace=True)]
            in_ch = c
        self.features = nn.Sequential(*layers)
        self.pool = GlobalAvgPool()
        self.classifier = nn.Linear(in_ch, classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))


class DSCNN(nn.Module):
    """models/ds_cnn.hpp: conv (kh 4 x kw 10, pad (2, 5), no bias; S: N=64 stride (2, 2),
    M: N=172 stride (1, 2)) + BN + ReLU, 4 DepthwiseSeparable N→N (strides S: 1,1,1,1;
    M: 2,1,1,1), GAP, Linear(N → K)."""

    def __init__(self, sample, classes, size="s"):
        super().__init__()
        medium = size == "m"
        n = 172 if medium else 64
        self.conv1 = nn.Conv2d(sample[0], n, (4, 10), stride=(1 if medium else 2, 2),
                               padding=(2, 5), bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1 = bn(n)
        self.relu = nn.ReLU(inplace=True)
        self.blocks = nn.Sequential(*[DepthwiseSeparable(n, n, 2 if (medium and b == 0) else 1)
                                      for b in range(4)])
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(n, classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        return self.fc(self.pool(self.blocks(x)))


class AttentionPool(nn.Module):
    """mercury/nn/sequence.hpp AttentionPool: u_t = tanh(proj(x_t)), s_t = v·u_t,
    α = softmax_t(s), out = Σ_t α_t·x_t (no mask). proj = Linear(D, A), v = Linear(A, 1, no bias)."""

    def __init__(self, dim, attn_dim):
        super().__init__()
        self.proj = nn.Linear(dim, attn_dim)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, x):  # [B, T, D] → [B, D]
        alpha = torch.softmax(self.v(torch.tanh(self.proj(x))).squeeze(-1), dim=1)  # [B, T]
        return torch.bmm(alpha.unsqueeze(1), x).squeeze(1)


class LstmAttention(nn.Module):
    """models/lstm_attention.hpp: Embedding(vocab, 128, padding_idx 0) → 2-layer bidirectional
    LSTM(128 → 128, batch_first, zero initial state) → AttentionPool(256, 128) → Linear(256 → K)."""

    def __init__(self, classes, vocab=20000, embed_dim=128, hidden=128, layers=2, attn_dim=128,
                 padding_idx=0):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed_dim, padding_idx=padding_idx)
        self.lstm = nn.LSTM(embed_dim, hidden, num_layers=layers, bidirectional=True,
                            batch_first=True)
        self.attention = AttentionPool(2 * hidden, attn_dim)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, ids):  # [B, T] long
        h, _ = self.lstm(self.embedding(ids))
        return self.fc(self.attention(h))


class TextCNN(nn.Module):
    """models/textcnn.hpp: Embedding(vocab, 300, padding_idx 0) → [B, 1, T, E]; per k in 3, 4, 5:
    Conv2d(1 → 100, (k, E), with bias, default init) → ReLU → max over time; concat → Dropout(0.5)
    → Linear(300 → K)."""

    def __init__(self, classes, vocab=20000, embed_dim=300, filters=100, kernel_sizes=(3, 4, 5),
                 dropout=0.5, padding_idx=0):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed_dim, padding_idx=padding_idx)
        self.convs = nn.ModuleList([nn.Conv2d(1, filters, (k, embed_dim)) for k in kernel_sizes])
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(filters * len(kernel_sizes), classes)

    def forward(self, ids):  # [B, T] long
        e = self.embedding(ids).unsqueeze(1)  # [B, 1, T, E]
        feats = [torch.amax(F.relu(c(e), inplace=True), dim=(2, 3)) for c in self.convs]
        return self.fc(self.dropout(torch.cat(feats, 1)))


# ---- the registry -----------------------------------------------------------------------------

IMAGE, TOKENS = "image", "tokens"

# name → (input kind, default sample, default classes, default batch)
DEFAULTS = {
    "cnn": (IMAGE, (1, 28, 28), 10, 64),
    "mlp": (IMAGE, (1, 28, 28), 10, 64),
    "resnet8": (IMAGE, (3, 32, 32), 10, 32),
    "resnet20": (IMAGE, (3, 32, 32), 10, 32),
    "resnet18": (IMAGE, (3, 32, 32), 10, 32),
    "resnet50": (IMAGE, (3, 32, 32), 100, 32),
    "mobilenetv2": (IMAGE, (3, 64, 64), 30, 32),
    "vgg13": (IMAGE, (1, 161, 101), 35, 64),
    "lstm_attention": (TOKENS, (100,), 4, 64),
    "textcnn": (TOKENS, (100,), 4, 64),
    "ds_cnn": (IMAGE, (1, 161, 101), 35, 64),
}
DEFAULT_VOCAB = 20000
TEXTCNN_MAX_KERNEL = 5


def check_sample(name, sample):
    """None when the model takes this sample shape, else why not (the C++ factories' rules)."""
    kind = DEFAULTS[name][0]
    got = "[" + ", ".join(str(d) for d in sample) + "]"
    if name == "mlp":
        return None if sample and all(d >= 1 for d in sample) else \
            "positive dimensions, found " + got
    if kind == TOKENS:
        min_len = TEXTCNN_MAX_KERNEL if name == "textcnn" else 1
        if len(sample) != 1 or sample[0] < min_len:
            return "[T] token-id inputs with T >= %d, found %s" % (min_len, got)
        return None
    if name == "cnn":
        if len(sample) != 3 or sample[0] < 1 or ((sample[1] - 4) // 2 - 4) // 2 < 1 or \
                ((sample[2] - 4) // 2 - 4) // 2 < 1:
            return "[C, H, W] inputs of at least 16x16, found " + got
        return None
    min_hw = 32 if name == "vgg13" else 1
    if len(sample) != 3 or sample[0] < 1 or sample[1] < min_hw or sample[2] < min_hw:
        return "[C, H, W] inputs with H, W >= %d, found %s" % (min_hw, got)
    return None


def make_model(name, sample, classes, vocab=DEFAULT_VOCAB, width=1.0, ds_size="s"):
    if name == "cnn":
        return CNN(sample, classes)
    if name == "mlp":
        return MLP(sample, classes)
    if name == "resnet8":
        return ResNet(sample, classes, BasicBlock, 16, [1, 1, 1], [16, 32, 64])
    if name == "resnet20":
        return ResNet(sample, classes, BasicBlock, 16, [3, 3, 3], [16, 32, 64])
    if name == "resnet18":
        return ResNet(sample, classes, BasicBlock, 64, [2, 2, 2, 2], [64, 128, 256, 512])
    if name == "resnet50":
        return ResNet(sample, classes, Bottleneck, 64, [3, 4, 6, 3], [64, 128, 256, 512])
    if name == "mobilenetv2":
        return MobileNetV2(sample, classes, width=width)
    if name == "vgg13":
        return VGG13(sample, classes)
    if name == "ds_cnn":
        return DSCNN(sample, classes, ds_size)
    if name == "lstm_attention":
        return LstmAttention(classes, vocab=vocab)
    if name == "textcnn":
        return TextCNN(classes, vocab=vocab)
    raise ValueError(name)


def count_params(model):
    return sum(p.numel() for p in model.parameters())


# ---- expected counts, transcribed from tests/unit/test_models.cpp (independent of the above) ---

def _basic_block(i, p, s):
    proj = s != 1 or i != p
    return 9 * i * p + 2 * p + 9 * p * p + 2 * p + (i * p + 2 * p if proj else 0)


def _bottleneck(i, p, s):
    out = 4 * p
    proj = s != 1 or i != out
    return i * p + 2 * p + 9 * p * p + 2 * p + p * out + 2 * out + (i * out + 2 * out if proj else 0)


def _resnet_count(C, K, stem, blocks, planes, bottleneck):
    n, i = 9 * C * stem + 2 * stem, stem
    for s, (nb, p) in enumerate(zip(blocks, planes)):
        for b in range(nb):
            st = 2 if s > 0 and b == 0 else 1
            n += _bottleneck(i, p, st) if bottleneck else _basic_block(i, p, st)
            i = 4 * p if bottleneck else p
    return n + i * K + K


def _mobilenetv2_count(C, K, w):
    table = [(1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1)]
    i = make_divisible(32 * w)
    n = 9 * C * i + 2 * i
    for t, c, reps in table:
        out = make_divisible(c * w)
        for _ in range(reps):
            h = i * t
            if t != 1:
                n += i * h + 2 * h
            n += 9 * h + 2 * h + h * out + 2 * out
            i = out
    last = make_divisible(1280 * max(1.0, w))
    return n + i * last + 2 * last + last * K + K


def _vgg13_features(C):
    n, i = 0, C
    for c in (64, 64, 128, 128, 256, 256, 512, 512, 512, 512):
        n += i * c * 9 + c + 2 * c
        i = c
    return n


# (name, sample, classes, options, expected, source)
EXPECTED = [
    ("cnn", (1, 28, 28), 10, {}, 32 * 25 + 32 + 64 * 32 * 25 + 64 + 1024 * 128 + 128 + 1290,
     "test_models.cpp"),
    ("mlp", (1, 28, 28), 10, {}, 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10,
     "cnn.hpp definition (not in test_models.cpp)"),
    ("resnet8", (3, 32, 32), 10, {}, _resnet_count(3, 10, 16, [1, 1, 1], [16, 32, 64], False),
     "test_models.cpp formula"),
    ("resnet20", (3, 32, 32), 10, {}, 272474, "test_models.cpp"),
    ("resnet18", (3, 32, 32), 10, {}, 11173962, "test_models.cpp"),
    ("resnet50", (3, 32, 32), 100, {}, 23705252, "test_models.cpp"),
    ("mobilenetv2", (3, 64, 64), 30, {}, 3504872 - 1281 * 970, "test_models.cpp"),
    ("vgg13", (1, 161, 101), 35, {}, _vgg13_features(1) + 512 * 35 + 35, "test_models.cpp"),
    ("lstm_attention", (100,), 4, {},
     20000 * 128 + 2 * (512 * (128 + 128) + 1024) + 2 * (512 * (256 + 128) + 1024) +
     (128 * 256 + 128 + 128) + 256 * 4 + 4, "test_models.cpp"),
    ("textcnn", (100,), 4, {},
     20000 * 300 + 100 * (3 * 300 + 1) + 100 * (4 * 300 + 1) + 100 * (5 * 300 + 1) + 300 * 4 + 4,
     "test_models.cpp"),
    ("ds_cnn", (1, 161, 101), 35, {},
     64 * 40 + 128 + 4 * (9 * 64 + 128 + 64 * 64 + 128) + 64 * 35 + 35, "test_models.cpp"),
    # The non-default cases of the same test.
    ("resnet50", (3, 32, 32), 10, {}, 23520842, "test_models.cpp (extra case)"),
    ("mobilenetv2", (3, 32, 32), 10, {"width": 0.5}, _mobilenetv2_count(3, 10, 0.5),
     "test_models.cpp (extra case, width 0.5)"),
    ("ds_cnn", (1, 40, 101), 35, {"ds_size": "m"},
     172 * 40 + 344 + 4 * (9 * 172 + 344 + 172 * 172 + 344) + 172 * 35 + 35,
     "test_models.cpp (extra case, size M)"),
]


def run_list():
    bad = 0
    print("%-15s %-14s %7s %-12s %12s %12s  %s" %
          ("model", "sample", "classes", "options", "params", "expected", "check"))
    for name, sample, classes, opts, expected, source in EXPECTED:
        got = count_params(make_model(name, sample, classes, **opts))
        ok = got == expected
        bad += not ok
        print("%-15s %-14s %7d %-12s %12d %12d  %s (%s)" %
              (name, "[" + ",".join(map(str, sample)) + "]", classes,
               ",".join("%s=%s" % kv for kv in opts.items()) or "-", got, expected,
               "OK" if ok else "MISMATCH", source))
    return 1 if bad else 0


# ---- measurement ------------------------------------------------------------------------------

def vm_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0  # kB
    return None


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def positive_int():
    def parse(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError("expected a positive integer, found '%s'" % s)
        if v < 1:
            raise argparse.ArgumentTypeError("expected a positive integer, found %d" % v)
        return v
    return parse


def positive_float():
    def parse(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError("expected a positive number, found '%s'" % s)
        if not (v > 0.0 and v != float("inf")):
            raise argparse.ArgumentTypeError("expected a positive finite number, found %s" % s)
        return v
    return parse


def seed_value(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError("expected an integer in [0, 2^63), found '%s'" % s)
    if not 0 <= v < 2 ** 63:
        raise argparse.ArgumentTypeError("expected an integer in [0, 2^63), found %d" % v)
    return v


def sample_shape(s):
    parts = s.split(",")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = None
    if dims is None or len(dims) not in (1, 3) or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(
            "expected C,H,W (images) or T (token ids) with positive integers, found '%s'" % s)
    return dims


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="PyTorch peer of Mercury's model zoo: training/scoring throughput and peak "
                    "memory on the same model, batch and optimizer. Run with "
                    + MALLOC_ADVICE + " in the environment.")
    ap.add_argument("--model", choices=sorted(DEFAULTS), help="model of Mercury's zoo")
    ap.add_argument("--mode", choices=("train", "score"), help="train: Adam steps; score: eval forward")
    ap.add_argument("--batch", type=positive_int(), help="batch size (default: per model)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--steps", type=positive_int(),
                   help="exactly N timed steps after the warm-up")
    g.add_argument("--seconds", type=positive_float(),
                   help="time budget of the timed loop (default 5)")
    ap.add_argument("--threads", type=positive_int(), default=1,
                    help="torch.set_num_threads (default 1)")
    ap.add_argument("--sample", type=sample_shape, help="C,H,W or T (default: per model)")
    ap.add_argument("--classes", type=positive_int(), help="classes (default: per model)")
    ap.add_argument("--vocab", type=int,
                    help="vocabulary of the token models (default 20000; must be >= 2)")
    ap.add_argument("--seed", type=seed_value, default=1, help="model init and data seed (default 1)")
    ap.add_argument("--width", type=positive_float(),
                    help="mobilenetv2 width multiplier (default 1)")
    ap.add_argument("--ds-size", choices=("s", "m"), help="ds_cnn size (default s)")
    ap.add_argument("--check-params", type=positive_int(), metavar="N",
                    help="exit 1 before running unless the model has exactly N parameters")
    ap.add_argument("--list", action="store_true",
                    help="print every model's parameter count next to the expected one, then exit")
    args = ap.parse_args(argv)
    if args.list:
        return ap, args
    if args.model is None:
        ap.error("--model is required (expected one of: %s)" % ", ".join(DEFAULTS))
    if args.mode is None:
        ap.error("--mode is required (expected train or score)")
    kind, sample, classes, batch = DEFAULTS[args.model]
    args.sample = args.sample or sample
    args.classes = args.classes or classes
    args.batch = args.batch or batch
    why = check_sample(args.model, args.sample)
    if why:
        ap.error("--sample: %s expects %s" % (args.model, why))
    if kind == TOKENS:
        if args.vocab is None:
            args.vocab = DEFAULT_VOCAB
        elif args.vocab < 2:
            ap.error("--vocab: expected >= 2 (ids 1..vocab-1, 0 is padding), found %d" % args.vocab)
    elif args.vocab not in (None, 0):
        ap.error("--vocab: %s takes images, expected no --vocab (or 0), found %d"
                 % (args.model, args.vocab))
    if args.width is not None and args.model != "mobilenetv2":
        ap.error("--width: applies to mobilenetv2 only, found --model %s" % args.model)
    if args.ds_size is not None and args.model != "ds_cnn":
        ap.error("--ds-size: applies to ds_cnn only, found --model %s" % args.model)
    return ap, args


def make_pool(kind, batch, sample, classes, vocab, seed):
    """POOL_BATCHES distinct (x, y) batches from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    pool = []
    for _ in range(POOL_BATCHES):
        if kind == TOKENS:
            x = torch.randint(1, vocab, (batch,) + tuple(sample), generator=g, dtype=torch.long)
        else:
            x = torch.randn((batch,) + tuple(sample), generator=g)
        y = torch.randint(0, classes, (batch,), generator=g, dtype=torch.long)
        pool.append((x, y))
    return pool


def main(argv=None):
    _, args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.list:
        return run_list()

    malloc_env = {v: os.environ.get(v) for v in MALLOC_VARS}
    if any(val is None for val in malloc_env.values()):
        print("torch_zoo.py: warning: glibc malloc thresholds not pinned (%s); PyTorch then "
              "page-faults every large activation anew — run with %s for its best numbers"
              % (", ".join("%s=%s" % kv for kv in malloc_env.items()), MALLOC_ADVICE),
              file=sys.stderr)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    kind = DEFAULTS[args.model][0]
    opts = {}
    if args.model == "mobilenetv2" and args.width is not None:
        opts["width"] = args.width
    if args.model == "ds_cnn" and args.ds_size is not None:
        opts["ds_size"] = args.ds_size
    vocab = args.vocab if kind == TOKENS else DEFAULT_VOCAB
    model = make_model(args.model, args.sample, args.classes, vocab=vocab, **opts)
    params = count_params(model)
    if args.check_params is not None and params != args.check_params:
        print("torch_zoo.py: %s %s with %d classes: expected %d parameters, found %d"
              % (args.model, list(args.sample), args.classes, args.check_params, params),
              file=sys.stderr)
        return 1

    pool = make_pool(kind, args.batch, args.sample, args.classes, vocab, args.seed)
    pool_mib = sum(x.numel() * x.element_size() + y.numel() * y.element_size()
                   for x, y in pool) / 2.0 ** 20

    if args.mode == "train":
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=ADAM_LR, betas=ADAM_BETAS, eps=ADAM_EPS,
                               weight_decay=0.0)

        def step(x, y):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y, reduction="none").mean().backward()
            opt.step()
    else:
        model.eval()

        def step(x, y):
            with torch.no_grad():
                F.cross_entropy(model(x), y, reduction="none")

    base_rss = vm_rss_mib()
    i = 0
    for _ in range(WARMUP_STEPS):
        step(*pool[i % POOL_BATCHES])
        i += 1
    n, t0 = 0, time.perf_counter()
    if args.steps is not None:
        for _ in range(args.steps):
            step(*pool[i % POOL_BATCHES])
            i += 1
        n = args.steps
        elapsed = time.perf_counter() - t0
    else:
        budget = args.seconds if args.seconds is not None else 5.0
        while True:
            step(*pool[i % POOL_BATCHES])
            i += 1
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= budget:
                break

    out = {"peer": "torch", "torch_version": torch.__version__, "model": args.model,
           "mode": args.mode, "batch": args.batch, "sample": list(args.sample),
           "classes": args.classes, "params": params, "threads": args.threads,
           "samples_per_s": n * args.batch / elapsed, "peak_rss_mib": round(peak_rss_mib(), 1),
           "base_rss_mib": round(base_rss, 1) if base_rss is not None else None,
           "malloc_env": malloc_env, "steps": n, "elapsed_s": round(elapsed, 4),
           "warmup_steps": WARMUP_STEPS, "data_pool_mib": round(pool_mib, 1), "seed": args.seed}
    if kind == TOKENS:
        out["vocab"] = vocab
    if opts:
        out["options"] = opts
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
