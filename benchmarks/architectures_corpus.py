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


class _Detections(nn.Module):
    """A torchvision detector over a batch tensor: the first image's detections, as tensors."""

    def __init__(self, model: nn.Module, keys: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(list(x))
        return tuple(out[0][k] for k in self.keys)


def _torchvision_detector(name: str, keys=("boxes", "scores", "labels"), **kwargs):
    """Its backbone's BatchNorm calibrated (a detector in training mode wants targets); kwargs lower
    the score threshold where random weights would leave no detection to compare."""

    def build() -> nn.Module:
        import torchvision.models.detection as detection

        made = getattr(detection, name)(weights=None, weights_backbone=None, **kwargs)
        _calibrated(made.backbone, IMAGE)
        return _Detections(made.eval(), keys)

    return build


class _LastFlow(nn.Module):
    """RAFT's last refinement of the flow between two images."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model(x, y)[-1]


def _raft_small() -> nn.Module:
    from torchvision.models.optical_flow import raft_small

    return _LastFlow(raft_small(weights=None).eval())


def _two_images(gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    return (torch.randn(*IMAGE, generator=gen), torch.randn(*IMAGE, generator=gen))


YOLO_IMAGE = (1, 3, 640, 640)


def _ultralytics(task: str, config: str):
    """An ultralytics model from its yaml, its head in export mode (tensors out, as its own exporter)."""

    def build() -> nn.Module:
        from ultralytics.nn import tasks

        model = getattr(tasks, task)(config, verbose=False)
        for module in model.modules():
            if hasattr(module, "export"):
                module.export = True
        return _calibrated(model, YOLO_IMAGE)

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
# Added for breadth (issue 17 asks for at least 150 models across these libraries' families).
OPT_125M = {"hidden_size": 768, "ffn_dim": 3072, "num_attention_heads": 12, "word_embed_proj_dim": 768}
BLOOM_560M = {"hidden_size": 1024, "n_head": 16, "n_layer": 2}
PYTHIA_160M = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12}
MIXTRAL_SMALL = {
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
}
QWEN3_06B = {
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
}
GEMMA2_2B = {
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
}
OLMO_1B = {"hidden_size": 2048, "intermediate_size": 8192, "num_attention_heads": 16}
SMALL_DECODER = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
}
CORPUS += [
    *(
        _image_model(f"tv_{n}", _torchvision(n, shape), shape, IMAGE_HW_AXES if hw else IMAGE_AXES)
        for n, hw, shape in (
            ("alexnet", False, IMAGE),
            ("vgg11_bn", False, IMAGE),
            ("resnet34", True, IMAGE),
            ("resnet101", True, IMAGE),
            ("wide_resnet50_2", True, IMAGE),
            ("inception_v3", False, (1, 3, 299, 299)),
            ("mnasnet1_0", True, IMAGE),
            ("efficientnet_b3", True, (1, 3, 300, 300)),
            ("efficientnet_v2_s", True, (1, 3, 384, 384)),
            ("regnet_x_400mf", True, IMAGE),
            ("shufflenet_v2_x0_5", True, IMAGE),
            ("squeezenet1_0", True, IMAGE),
            ("convnext_small", True, IMAGE),
            ("vit_b_32", False, IMAGE),
            ("swin_v2_t", False, (1, 3, 256, 256)),
            ("densenet169", True, IMAGE),
        )
    ),
    _image_model("tv_ssdlite320_mobilenet_v3_large", _torchvision_detector("ssdlite320_mobilenet_v3_large")),
    _image_model(
        "tv_fasterrcnn_mobilenet_v3_large_320_fpn",
        _torchvision_detector("fasterrcnn_mobilenet_v3_large_320_fpn", box_score_thresh=0.0),
    ),
    _image_model("tv_fcos_resnet50_fpn", _torchvision_detector("fcos_resnet50_fpn", score_thresh=0.0)),
    _image_model(
        "tv_retinanet_resnet50_fpn", _torchvision_detector("retinanet_resnet50_fpn", score_thresh=0.0)
    ),
    _image_model(
        "tv_fcn_resnet50",
        _torchvision("segmentation.fcn_resnet50", keys=("out",), weights_backbone=None),
        axes=IMAGE_HW_AXES,
    ),
    _image_model(
        "tv_deeplabv3_resnet50",
        _torchvision("segmentation.deeplabv3_resnet50", keys=("out",), weights_backbone=None),
        axes=IMAGE_HW_AXES,
    ),
    ZooModel(
        "tv_raft_small",
        _raft_small,
        _two_images,
        ("x", "y"),
        {"x": {0: "batch", 2: "height", 3: "width"}, "y": {0: "batch", 2: "height", 3: "width"}},
        family="vision",
    ),
    _image_model("tv_mc3_18", _torchvision("video.mc3_18", (1, 3, 8, 112, 112)), (1, 3, 8, 112, 112)),
    _image_model(
        "tv_r2plus1d_18", _torchvision("video.r2plus1d_18", (1, 3, 8, 112, 112)), (1, 3, 8, 112, 112)
    ),
    *(
        _image_model(f"timm_{n}", _timm(n, shape), shape)
        for n, shape in (
            ("resnet50d", IMAGE),
            ("resnetv2_50", IMAGE),
            ("seresnext26d_32x4d", IMAGE),
            ("tf_efficientnet_lite0", IMAGE),
            ("mixnet_s", IMAGE),
            ("mnasnet_100", IMAGE),
            ("fbnetc_100", IMAGE),
            ("lcnet_050", IMAGE),
            ("tinynet_a", (1, 3, 192, 192)),
            ("mobilenetv2_100", IMAGE),
            ("mobilenetv4_hybrid_medium", (1, 3, 256, 256)),
            ("ghostnetv2_100", IMAGE),
            ("repvgg_a0", IMAGE),
            ("dla34", IMAGE),
            ("dpn68", IMAGE),
            ("cspresnet50", (1, 3, 256, 256)),
            ("cspdarknet53", (1, 3, 256, 256)),
            ("ese_vovnet19b_dw", IMAGE),
            ("selecsls42b", IMAGE),
            ("regnetx_002", IMAGE),
            ("convnextv2_atto", IMAGE),
            ("efficientvit_b0", IMAGE),
            ("efficientvit_m0", IMAGE),
            ("levit_128", IMAGE),
            ("mobilevitv2_050", (1, 3, 256, 256)),
            ("edgenext_xx_small", (1, 3, 256, 256)),
            ("tiny_vit_5m_224", IMAGE),
            ("pvt_v2_b0", IMAGE),
            ("crossvit_tiny_240", (1, 3, 240, 240)),
            ("vit_small_patch16_224", IMAGE),
            ("deit3_small_patch16_224", IMAGE),
            ("cait_xxs24_224", IMAGE),
            ("xcit_nano_12_p16_224", IMAGE),
            ("mixer_b16_224", IMAGE),
            ("resmlp_12_224", IMAGE),
            ("gmlp_ti16_224", IMAGE),
            ("eca_nfnet_l0", IMAGE),
            ("res2net50_26w_4s", IMAGE),
            ("resnest14d", IMAGE),
            ("skresnet18", IMAGE),
            ("inception_v3", (1, 3, 299, 299)),
            ("xception41", (1, 3, 299, 299)),
            ("poolformerv2_s12", IMAGE),
            ("coatnet_nano_rw_224", IMAGE),
            ("davit_tiny", IMAGE),
            ("focalnet_tiny_srf", IMAGE),
            ("gcvit_xxtiny", IMAGE),
            ("hgnet_tiny", IMAGE),
            ("inception_next_tiny", IMAGE),
            ("repvit_m1", IMAGE),
            ("swinv2_cr_tiny_ns_224", IMAGE),
            ("volo_d1_224", IMAGE),
            ("visformer_tiny", IMAGE),
        )
    ),
    _text_model("hf_mobilebert", _transformers("MobileBertConfig", "MobileBertModel")),
    _text_model("hf_squeezebert", _transformers("SqueezeBertConfig", "SqueezeBertModel")),
    _text_model("hf_mpnet_base", _transformers("MPNetConfig", "MPNetModel")),
    _text_model("hf_convbert_base", _transformers("ConvBertConfig", "ConvBertModel")),
    _text_model(
        "hf_xlm_roberta_base", _transformers("XLMRobertaConfig", "XLMRobertaModel", vocab_size=32000)
    ),
    _text_model("hf_funnel_small_base", _transformers("FunnelConfig", "FunnelBaseModel")),
    _text_model("hf_opt_2l", _transformers("OPTConfig", "OPTModel", **OPT_125M, **DECODER)),
    _text_model(
        "hf_bloom_2l",
        _transformers("BloomConfig", "BloomModel", **BLOOM_560M, use_cache=False, vocab_size=32000),
    ),
    _text_model("hf_gpt_neox_2l", _transformers("GPTNeoXConfig", "GPTNeoXModel", **PYTHIA_160M, **DECODER)),
    _text_model("hf_mixtral_2l", _transformers("MixtralConfig", "MixtralModel", **MIXTRAL_SMALL, **DECODER)),
    _text_model("hf_qwen3_2l", _transformers("Qwen3Config", "Qwen3Model", **QWEN3_06B, **DECODER)),
    _text_model("hf_gemma2_2l", _transformers("Gemma2Config", "Gemma2Model", **GEMMA2_2B, **DECODER)),
    _text_model("hf_olmo_2l", _transformers("OlmoConfig", "OlmoModel", **OLMO_1B, **DECODER)),
    _text_model(
        "hf_stablelm_2l", _transformers("StableLmConfig", "StableLmModel", **SMALL_DECODER, **DECODER)
    ),
    _text_model("hf_granite_2l", _transformers("GraniteConfig", "GraniteModel", **SMALL_DECODER, **DECODER)),
    _text_model(
        "hf_starcoder2_2l", _transformers("Starcoder2Config", "Starcoder2Model", **SMALL_DECODER, **DECODER)
    ),
    _text_model(
        "hf_falcon_2l",
        _transformers("FalconConfig", "FalconModel", hidden_size=1024, num_attention_heads=16, **DECODER),
    ),
    *(
        _image_model(f"hf_{n}", _transformers(config, model), family="transformers")
        for n, config, model in (
            ("dinov2_small", "Dinov2Config", "Dinov2Model"),
            ("beit_base", "BeitConfig", "BeitModel"),
            ("convnext_tiny", "ConvNextConfig", "ConvNextModel"),
            ("deit_base", "DeiTConfig", "DeiTModel"),
            ("data2vec_vision_base", "Data2VecVisionConfig", "Data2VecVisionModel"),
            ("poolformer_s12", "PoolFormerConfig", "PoolFormerModel"),
        )
    ),
    _image_model(
        "hf_mobilevit_small",
        _transformers("MobileViTConfig", "MobileViTModel"),
        (1, 3, 256, 256),
        family="transformers",
    ),
    _image_model(
        "hf_detr_resnet50",
        _transformers("DetrConfig", "DetrModel", use_pretrained_backbone=False),
        (1, 3, 384, 384),
        family="transformers",
    ),
    *(
        ZooModel(
            f"hf_{n}",
            _transformers(config, model),
            lambda g: (torch.randn(1, 16000, generator=g),),
            ("x",),
            {"x": {0: "batch", 1: "samples"}},
            family="transformers",
        )
        for n, config, model in (
            ("hubert_base", "HubertConfig", "HubertModel"),
            ("wavlm_base", "WavLMConfig", "WavLMModel"),
        )
    ),
    *(
        _image_model(
            f"yolo_{n}", _ultralytics(task, f"{n}.yaml"), YOLO_IMAGE, IMAGE_HW_AXES, family="ultralytics"
        )
        for n, task in (
            ("yolov8n", "DetectionModel"),
            ("yolov8n-seg", "SegmentationModel"),
            ("yolov8n-pose", "PoseModel"),
            ("yolo11n", "DetectionModel"),
            ("yolo11n-seg", "SegmentationModel"),
            ("yolo11n-pose", "PoseModel"),
            ("yolo11n-cls", "ClassificationModel"),
        )
    ),
]
BY_NAME = {m.name: m for m in CORPUS}
