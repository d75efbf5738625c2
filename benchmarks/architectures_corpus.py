"""The architectures corpus: the models users bring, at their real size and input resolution, random
weights (nothing downloaded), built from torchvision 0.28.0, timm 1.0.31 (corpus_libs.py) and
transformers' own configs (their defaults are the base checkpoints' shapes; decoders at 2 layers).

Each entry is a ZooModel (examples/zoo/models.py), so zoo.py's exporters and runner serve it: both
exporters, static and with dynamic axes (batch; sequence for text; H and W where the model allows).
BatchNorm statistics are calibrated on random batches before export, and a classifier's last Linear
is scaled so its logits spread near 1: untrained defaults make outputs that barely depend on the
input, and parity on them proves nothing (../shared/NOTES.md).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "zoo"))
from models import HiddenStates, ZooModel

IMAGE = (1, 3, 224, 224)
TOKENS = (1, 16)
VOCAB_PROBED = 1000  # token ids drawn below it: inside every config's vocabulary
IMAGE_AXES = {"x": {0: "batch"}}
IMAGE_HW_AXES = {"x": {0: "batch", 2: "height", 3: "width"}}
TEXT_AXES = {"x": {0: "batch", 1: "seq"}}


def _calibrated(module: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """BatchNorm running statistics from three random batches; the last Linear scaled so that the
    outputs spread near 1."""
    with torch.no_grad():
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
            module.train()
            for _ in range(3):
                module(torch.randn(2, *shape[1:]))
        module.eval()
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        out = module(torch.randn(2, *shape[1:]))
        first = out if isinstance(out, torch.Tensor) else None
        if linears and first is not None and first.ndim == 2 and float(first.std()) > 0:
            linears[-1].weight.mul_(1.0 / float(first.std()))
    return module


def _image(gen: torch.Generator, shape: tuple[int, ...] = IMAGE) -> tuple[torch.Tensor, ...]:
    return (torch.randn(*shape, generator=gen),)


def _tokens(gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    return (torch.randint(0, VOCAB_PROBED, TOKENS, generator=gen, dtype=torch.int64),)


class _First(nn.Module):
    """A model whose output is a dict or a tuple, reduced to its tensors in a fixed order."""

    def __init__(self, model: nn.Module, keys: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        return tuple(out[k] for k in self.keys)


def _torchvision(name: str, shape: tuple[int, ...] = IMAGE, keys: tuple[str, ...] = (), **kwargs):
    def build() -> nn.Module:
        module_name, _, factory = f"torchvision.models.{name}".rpartition(".")
        made = getattr(importlib.import_module(module_name), factory)(weights=None, **kwargs)
        model = _calibrated(made, shape)
        return _First(model, keys) if keys else model

    return build


def _timm(name: str, shape: tuple[int, ...] = IMAGE):
    def build() -> nn.Module:
        import timm

        return _calibrated(timm.create_model(name, pretrained=False), shape)

    return build


def _transformers(config_class: str, model_class: str, keys=("last_hidden_state",), **overrides):
    def build() -> nn.Module:
        import transformers

        config = getattr(transformers, config_class)(**overrides)
        return HiddenStates(getattr(transformers, model_class)(config), keys)

    return build


def _image_model(name, build, shape=IMAGE, axes=IMAGE_AXES, family="vision") -> ZooModel:
    return ZooModel(name, build, lambda g: _image(g, shape), ("x",), axes, family=family)


def _text_model(name: str, build: Callable[[], nn.Module]) -> ZooModel:
    return ZooModel(name, build, _tokens, ("x",), TEXT_AXES, {"x": VOCAB_PROBED}, family="text")


def _whisper_tiny_encoder() -> nn.Module:
    import transformers

    config = transformers.WhisperConfig(**WHISPER_TINY)
    return HiddenStates(transformers.WhisperModel(config).get_encoder())


# The base checkpoints' shapes where a config's defaults are another size. Decoders: the small
# checkpoints' widths at 2 layers, their vocabularies capped at 32,000 (the embedding Gather's table is
# the one size reduced: Gemma's 256,000 rows alone would be 3 GB).
DEBERTA_V3_BASE = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "vocab_size": 128100,
    "relative_attention": True,
    "position_buckets": 256,
    "norm_rel_ebd": "layer_norm",
    "share_att_key": True,
    "pos_att_type": ["p2c", "c2p"],
    "max_relative_positions": -1,
}
ALBERT_BASE = {
    "hidden_size": 768,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "embedding_size": 128,
}
ELECTRA_BASE = {
    "hidden_size": 768,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "embedding_size": 768,
}
WHISPER_TINY = {
    "d_model": 384,
    "encoder_layers": 4,
    "decoder_layers": 4,
    "encoder_attention_heads": 6,
    "decoder_attention_heads": 6,
    "encoder_ffn_dim": 1536,
    "decoder_ffn_dim": 1536,
}
DECODER = {"num_hidden_layers": 2, "use_cache": False, "vocab_size": 32000}
TINYLLAMA = {
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
}
QWEN2_05B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
}
PHI_15 = {"hidden_size": 2048, "intermediate_size": 8192, "num_attention_heads": 32}
GEMMA_2B = {
    "hidden_size": 2048,
    "intermediate_size": 16384,
    "num_attention_heads": 8,
    "num_key_value_heads": 1,
    "head_dim": 256,
}
CORPUS: list[ZooModel] = [
    # torchvision: classification, segmentation, detection, video
    *(
        _image_model(f"tv_{n}", _torchvision(n), axes=IMAGE_HW_AXES if hw else IMAGE_AXES)
        for n, hw in (
            ("resnet18", True),
            ("resnet50", True),
            ("mobilenet_v2", True),
            ("mobilenet_v3_small", True),
            ("mobilenet_v3_large", True),
            ("efficientnet_b0", True),
            ("convnext_tiny", True),
            ("regnet_y_400mf", True),
            ("shufflenet_v2_x1_0", True),
            ("squeezenet1_1", True),
            ("densenet121", True),
            ("mnasnet0_5", True),
            ("resnext50_32x4d", True),
            ("googlenet", True),
            ("vit_b_16", False),
            ("swin_t", False),
            ("maxvit_t", False),
        )
    ),
    _image_model(
        "tv_deeplabv3_mobilenet_v3_large",
        _torchvision("segmentation.deeplabv3_mobilenet_v3_large", keys=("out",), weights_backbone=None),
        axes=IMAGE_HW_AXES,
    ),
    _image_model(
        "tv_lraspp_mobilenet_v3_large",
        _torchvision("segmentation.lraspp_mobilenet_v3_large", keys=("out",), weights_backbone=None),
        axes=IMAGE_HW_AXES,
    ),
    _image_model("tv_r3d_18", _torchvision("video.r3d_18", (1, 3, 8, 112, 112)), (1, 3, 8, 112, 112)),
    # timm: a sample across its families
    *(
        _image_model(f"timm_{n}", _timm(n))
        for n in (
            "efficientnet_b0",
            "mobilenetv3_large_100",
            "mobilenetv4_conv_small",
            "convnext_tiny",
            "regnety_016",
            "ghostnet_100",
            "mobilevit_s",
            "levit_128s",
            "efficientformer_l1",
            "fastvit_t8",
            "poolformer_s12",
            "deit_tiny_patch16_224",
            "swin_tiny_patch4_window7_224",
            "coat_lite_tiny",
            "coatnet_0_rw_224",
            "hrnet_w18_small",
            "rexnet_100",
        )
    ),
    # transformers from their own configs
    _text_model("hf_bert_base", _transformers("BertConfig", "BertModel")),
    _text_model("hf_roberta_base", _transformers("RobertaConfig", "RobertaModel")),
    _text_model("hf_deberta_v3_base", _transformers("DebertaV2Config", "DebertaV2Model", **DEBERTA_V3_BASE)),
    _text_model("hf_albert_base_v2", _transformers("AlbertConfig", "AlbertModel", **ALBERT_BASE)),
    _text_model("hf_electra_base", _transformers("ElectraConfig", "ElectraModel", **ELECTRA_BASE)),
    _text_model("hf_distilbert", _transformers("DistilBertConfig", "DistilBertModel")),
    _text_model("hf_gpt2", _transformers("GPT2Config", "GPT2Model")),
    _text_model("hf_t5_small_encoder", _transformers("T5Config", "T5EncoderModel")),
    _text_model(
        "hf_bart_base_encoder", _transformers("BartConfig", "BartModel", ("encoder_last_hidden_state",))
    ),
    _text_model("hf_clip_text", _transformers("CLIPTextConfig", "CLIPTextModel")),
    _text_model("hf_llama_2l", _transformers("LlamaConfig", "LlamaModel", **TINYLLAMA, **DECODER)),
    _text_model("hf_mistral_2l", _transformers("MistralConfig", "MistralModel", **TINYLLAMA, **DECODER)),
    _text_model("hf_qwen2_2l", _transformers("Qwen2Config", "Qwen2Model", **QWEN2_05B, **DECODER)),
    _text_model("hf_phi_2l", _transformers("PhiConfig", "PhiModel", **PHI_15, **DECODER)),
    _text_model("hf_gemma_2l", _transformers("GemmaConfig", "GemmaModel", **GEMMA_2B, **DECODER)),
    _image_model("hf_vit_base", _transformers("ViTConfig", "ViTModel"), family="transformers"),
    _image_model(
        "hf_clip_vision", _transformers("CLIPVisionConfig", "CLIPVisionModel"), family="transformers"
    ),
    _image_model("hf_swin_tiny", _transformers("SwinConfig", "SwinModel"), family="transformers"),
    _image_model(
        "hf_segformer_b0",
        _transformers("SegformerConfig", "SegformerModel"),
        axes=IMAGE_HW_AXES,
        family="transformers",
    ),
    ZooModel(
        "hf_wav2vec2_base",
        _transformers("Wav2Vec2Config", "Wav2Vec2Model"),
        lambda g: (torch.randn(1, 16000, generator=g),),
        ("x",),
        {"x": {0: "batch", 1: "samples"}},
        family="transformers",
    ),
    ZooModel(
        "hf_whisper_tiny_encoder",
        _whisper_tiny_encoder,
        lambda g: (torch.randn(1, 80, 3000, generator=g),),
        ("x",),
        {"x": {0: "batch"}},
        family="transformers",
    ),
]
BY_NAME = {m.name: m for m in CORPUS}
