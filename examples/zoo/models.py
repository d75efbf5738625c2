"""The model zoo: small PyTorch models whose exports exercise what breaks onnx2tf conversions.

Every model is built from code with fixed seeds and tiny configs (random weights, nothing downloaded),
so each export takes seconds. `ZOO` lists them with their example inputs, the axes their dynamic
variant declares, and the value range of their integer inputs (token ids, indices).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

SEED = 0
VOCAB = 64  # every tiny text model's vocabulary: token ids are drawn below it


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: how to build the module and its example inputs, and how its variants differ."""

    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[torch.Generator], tuple[torch.Tensor, ...]]
    input_names: tuple[str, ...]
    # The axes the dynamic variant declares (input name -> {axis: dim name}).
    dynamic: Mapping[str, Mapping[int, str]]
    # Exclusive upper bound of an integer input's values (token ids within the vocab, valid indices).
    int_high: Mapping[str, int] = field(default_factory=dict)
    # The TorchScript exporter gets torch.jit.script(module): loops stay loops instead of being unrolled.
    script: bool = False
    family: str = "op"

    def module(self) -> nn.Module:
        """The module with weights drawn from a fixed seed, in eval mode."""
        torch.manual_seed(SEED)
        return self.build().eval()

    def example(self) -> tuple[torch.Tensor, ...]:
        return self.inputs(torch.Generator().manual_seed(SEED))


def _randn(gen: torch.Generator, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=gen).to(dtype)


def _ids(gen: torch.Generator, *shape: int, high: int = VOCAB) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=gen, dtype=torch.int64)


BATCH = {"x": {0: "batch"}}
BATCH_SEQ = {"x": {0: "batch", 1: "seq"}}


# --- transformers models from tiny configs ------------------------------------------------------------


class HiddenStates(nn.Module):
    """A `transformers` model reduced to tensors in, tensors out (the exporters need no ModelOutput)."""

    def __init__(self, model: nn.Module, keys: tuple[str, ...] = ("last_hidden_state",)) -> None:
        super().__init__()
        self.model = model
        self.keys = keys

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        return tuple(out[k] for k in self.keys)


def _bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    return HiddenStates(BertModel(config), ("last_hidden_state", "pooler_output"))


def _distilbert() -> nn.Module:
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(
        vocab_size=VOCAB, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=64
    )
    return HiddenStates(DistilBertModel(config))


def _gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0
    )
    return HiddenStates(GPT2Model(config))


def _t5_encoder() -> nn.Module:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=VOCAB, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, use_cache=False
    )
    return HiddenStates(T5EncoderModel(config))


def _llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        use_cache=False,
    )
    return HiddenStates(LlamaModel(config))


def _vit() -> nn.Module:
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        image_size=16,
        patch_size=8,
        num_channels=3,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    return HiddenStates(ViTModel(config, add_pooling_layer=False))


WHISPER_MELS, WHISPER_FRAMES = 8, 16  # the encoder requires exactly 2 * max_source_positions frames


def _whisper_encoder() -> nn.Module:
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(
        vocab_size=VOCAB,
        num_mel_bins=WHISPER_MELS,
        d_model=16,
        encoder_layers=1,
        encoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=32,
        max_source_positions=WHISPER_FRAMES // 2,
        max_target_positions=16,
        pad_token_id=0,
        bos_token_id=0,
        eos_token_id=0,
        decoder_start_token_id=1,
    )
    return HiddenStates(WhisperEncoder(config))


# --- CNNs ---------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.down(x))


class ResNetLike(nn.Module):
    """Conv-BN-ReLU stem, max pool, two residual blocks (one strided with a 1x1 shortcut), GAP, FC."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 16, 2))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.blocks(F.max_pool2d(self.stem(x), 2))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


class InvertedResidual(nn.Module):
    def __init__(self, ch: int, expand: int) -> None:
        super().__init__()
        hidden = ch * expand
        self.body = nn.Sequential(
            nn.Conv2d(ch, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False),  # depthwise
            nn.BatchNorm2d(hidden),
            nn.Hardswish(),
            nn.Conv2d(hidden, ch, 1, bias=False),
            nn.BatchNorm2d(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MobileNetLike(nn.Module):
    """Strided stem, depthwise-separable inverted residuals with ReLU6 and Hardswish, GAP, FC."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU6())
        self.blocks = nn.Sequential(InvertedResidual(8, 4), InvertedResidual(8, 2))
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


class UNetLike(nn.Module):
    """Encoder, max pool, bottleneck, ConvTranspose up-sampling and a skip concat, plus an
    interpolate-up branch from the bottleneck."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.mid = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec = nn.Conv2d(8 * 3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc(x)
        mid = self.mid(F.max_pool2d(skip, 2))
        resized = F.interpolate(mid, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.dec(torch.cat([self.up(mid), skip, resized[:, :8]], 1))


# --- RNNs ---------------------------------------------------------------------------------------------


class Recurrent(nn.Module):
    """A torch.nn RNN over (batch, seq, features): its outputs and the final hidden state."""

    def __init__(self, kind: type[nn.Module], **kwargs) -> None:
        super().__init__()
        self.rnn = kind(8, 16, batch_first=True, **kwargs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, state = self.rnn(x)
        hidden = state[0] if isinstance(state, tuple) else state
        return out, hidden


# --- control flow -------------------------------------------------------------------------------------


class CondBranch(nn.Module):
    """torch.cond on a data-dependent predicate: an If for torch.export; a trace bakes in one branch."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.sum() > 0, lambda t: self.lin(t).relu(), lambda t: t * -0.5 + 1.0, (x,))


class ScanRecurrence(nn.Module):
    """A Python loop over the (dynamic) sequence axis: a Loop when scripted, unrolled when traced."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acc = torch.zeros_like(x[:, 0])
        outs = []
        for i in range(x.size(1)):
            acc = acc * 0.5 + torch.tanh(x[:, i])
            outs.append(acc)
        return torch.stack(outs, 1)


class HalveUntilSmall(nn.Module):
    """A while loop whose trip count depends on the data (halve until every |x| <= 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = torch.zeros((), dtype=torch.float32)
        while bool(x.abs().max() > 1.0):
            x = x * 0.5
            steps = steps + 1.0
        return x + steps


# --- single-op families -------------------------------------------------------------------------------


class Sdpa(nn.Module):
    """Causal scaled_dot_product_attention over (batch, seq, 16) with two heads."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(16, 48)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, 2, 8).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return y.transpose(1, 2).reshape(b, s, 16)


class Einsum(nn.Module):
    """A projection, a batched matmul and an outer product, each written as einsum."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 6))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.einsum("bsd,de->bse", x, self.w)
        scores = torch.einsum("bqe,bke->bqk", h, h)
        outer = torch.einsum("bi,bj->bij", h.sum(1), x.mean(1))
        return scores, outer


class GridSample(nn.Module):
    def forward(self, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Interpolate(nn.Module):
    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.kwargs = kwargs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, **self.kwargs)


class UnfoldFold(nn.Module):
    """im2col with unfold, a per-patch weighting, and col2im with fold back."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.rand(1, 3 * 9, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols = F.unfold(x, kernel_size=3, padding=1)
        return F.fold(cols * self.w, output_size=x.shape[-2:], kernel_size=3, padding=1)


class Cumsum(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cumsum(x, dim=1), torch.flip(torch.cumsum(torch.flip(x, [2]), 2), [2])


class TopK(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = torch.topk(x, 3, dim=-1)
        return values, indices


class Sort(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = torch.sort(x, dim=-1, descending=True)
        return values, indices


class ArgMinMax(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.argmax(x, dim=-1), torch.argmin(x, dim=1, keepdim=True)


class GatherScatter(nn.Module):
    """gather by an index input, then scatter_add the gathered values back into zeros."""

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        picked = torch.gather(x, 1, idx)
        return picked, torch.zeros_like(x).scatter_add(1, idx, picked * 2.0)


class IndexPut(nn.Module):
    """Assignment through constant indices and through a data-dependent boolean mask."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[:, torch.tensor([0, 3])] = -1.0
        y[x > 1.0] = 0.0
        return y


class NonZero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(x > 0.5)


class MaskedSelect(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.masked_select(x, x > 0.5)


class Float64Math(nn.Module):
    """float64 end to end: a double matmul, exp/log1p and a division by pi."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 4, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(torch.exp(x @ self.w * 0.25)) / math.pi + 1e-9


class Int64IndexMath(nn.Module):
    """int64 arithmetic on token ids (mul, add, remainder, floor division) feeding an embedding lookup."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(VOCAB, 4)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hashed = (ids * 7 + 3) % VOCAB
        shifted = torch.div(hashed, 2, rounding_mode="floor") + ids.max()
        return self.table(hashed).sum(-1), shifted


class PixelShuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        up = F.pixel_shuffle(self.conv(x), 2)
        return up, F.pixel_unshuffle(up, 2)


class FakeQuant(nn.Module):
    """QDQ: per-tensor uint8 fake-quantized activations around a conv with per-channel int8 weights."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255)
        scale = self.conv.weight.detach().abs().amax((1, 2, 3)) / 127.0
        zero = torch.zeros(8, dtype=torch.int32)
        w = torch.fake_quantize_per_channel_affine(self.conv.weight, scale, zero, 0, -128, 127)
        y = F.relu(F.conv2d(x, w, self.conv.bias, padding=1))
        y = torch.fake_quantize_per_tensor_affine(y, 0.02, 0, 0, 255)
        return self.fc(y.mean((2, 3)))


def _image(gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    return (_randn(gen, 2, 3, 16, 16),)


def _seq(gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    return (_randn(gen, 2, 6, 8),)


def _tokens(gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    return (_ids(gen, 2, 7),)


def _m(name, build, inputs, dynamic, names=("x",), **kwargs) -> ZooModel:
    return ZooModel(name, build, inputs, tuple(names), dynamic, **kwargs)


TEXT = {"int_high": {"x": VOCAB}, "family": "transformers"}
ZOO: list[ZooModel] = [
    _m("bert", _bert, _tokens, BATCH_SEQ, **TEXT),
    _m("distilbert", _distilbert, _tokens, BATCH_SEQ, **TEXT),
    _m("gpt2", _gpt2, _tokens, BATCH_SEQ, **TEXT),
    _m("t5_encoder", _t5_encoder, _tokens, BATCH_SEQ, **TEXT),
    _m("llama", _llama, _tokens, BATCH_SEQ, **TEXT),
    _m("vit", _vit, _image, BATCH, family="transformers"),
    _m(
        "whisper_encoder",
        _whisper_encoder,
        lambda g: (_randn(g, 2, WHISPER_MELS, WHISPER_FRAMES),),
        BATCH,
        family="transformers",
    ),
    _m("resnet", ResNetLike, _image, BATCH, family="cnn"),
    _m("mobilenet", MobileNetLike, _image, BATCH, family="cnn"),
    _m("unet", UNetLike, _image, BATCH, family="cnn"),
    _m("lstm", lambda: Recurrent(nn.LSTM), _seq, BATCH_SEQ, family="rnn"),
    _m("gru", lambda: Recurrent(nn.GRU), _seq, BATCH_SEQ, family="rnn"),
    _m(
        "bilstm",
        lambda: Recurrent(nn.LSTM, bidirectional=True, num_layers=2),
        _seq,
        BATCH_SEQ,
        family="rnn",
    ),
    _m("cond", CondBranch, lambda g: (_randn(g, 2, 8),), BATCH, family="control-flow"),
    _m("scan_loop", ScanRecurrence, _seq, BATCH_SEQ, script=True, family="control-flow"),
    _m(
        "while_loop",
        HalveUntilSmall,
        lambda g: (_randn(g, 2, 8) * 4,),
        BATCH,
        script=True,
        family="control-flow",
    ),
    _m("sdpa", Sdpa, lambda g: (_randn(g, 2, 6, 16),), BATCH_SEQ),
    _m("einsum", Einsum, _seq, BATCH_SEQ),
    _m(
        "grid_sample",
        GridSample,
        lambda g: (_randn(g, 2, 3, 8, 8), torch.rand(2, 5, 5, 2, generator=g) * 2.2 - 1.1),
        {"x": {0: "batch"}, "grid": {0: "batch"}},
        names=("x", "grid"),
    ),
    _m("interp_nearest", lambda: Interpolate(scale_factor=2.0, mode="nearest"), _image, BATCH),
    _m(
        "interp_bilinear",
        lambda: Interpolate(size=(13, 11), mode="bilinear", align_corners=False),
        _image,
        BATCH,
    ),
    _m(
        "interp_bilinear_ac",
        lambda: Interpolate(scale_factor=1.5, mode="bilinear", align_corners=True),
        _image,
        BATCH,
    ),
    _m("unfold_fold", UnfoldFold, lambda g: (_randn(g, 2, 3, 6, 7),), BATCH),
    _m("cumsum", Cumsum, _seq, BATCH_SEQ),
    _m("topk", TopK, _seq, BATCH_SEQ),
    _m("sort", Sort, _seq, BATCH_SEQ),
    _m("argminmax", ArgMinMax, _seq, BATCH_SEQ),
    _m(
        "gather_scatter",
        GatherScatter,
        lambda g: (_randn(g, 2, 8), _ids(g, 2, 5, high=8)),
        {"x": {0: "batch"}, "idx": {0: "batch"}},
        names=("x", "idx"),
        int_high={"idx": 8},
    ),
    _m("index_put", IndexPut, lambda g: (_randn(g, 2, 6),), BATCH),
    _m("nonzero", NonZero, lambda g: (_randn(g, 2, 6),), BATCH),
    _m("masked_select", MaskedSelect, lambda g: (_randn(g, 2, 6),), BATCH),
    _m("float64", Float64Math, lambda g: (_randn(g, 2, 8, dtype=torch.float64),), BATCH, family="dtype"),
    _m(
        "int64_index",
        Int64IndexMath,
        lambda g: (_ids(g, 2, 7),),
        {"ids": {0: "batch", 1: "seq"}},
        names=("ids",),
        int_high={"ids": VOCAB},
        family="dtype",
    ),
    _m("pixel_shuffle", PixelShuffle, lambda g: (_randn(g, 2, 3, 6, 6),), BATCH),
    _m("qdq", FakeQuant, _image, BATCH, family="quantization"),
]
BY_NAME = {m.name: m for m in ZOO}
