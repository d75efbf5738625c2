"""The models of the com.microsoft benchmark, made the ways users get them (random weights, fixed seeds).

- transformers models (BERT, DistilBERT, GPT-2, ViT, LLaMA: small real configs, eager attention)
  exported by both of torch's exporters, with static or dynamic batch and sequence, then fused for
  onnxruntime by its transformer optimizer (`onnxruntime.transformers.optimizer.optimize_model`:
  SkipLayerNormalization, BiasGelu, FastGelu, Attention, EmbedLayerNormalization, ...) or by
  onnxscript's (`ort_fusions.optimize_for_ort`: MultiHeadAttention, Attention, SkipSimplified-
  LayerNormalization, RotaryEmbedding, ...); onnxruntime's optimizer has no LLaMA model type.
- the same fused BERT and GPT-2 quantized by `onnxruntime.quantization.quantize_dynamic` and saved
  by onnxruntime's own session optimizer (DynamicQuantizeMatMul, MatMulIntegerToFloat).
- decoder LLMs written by onnxruntime-genai's model builder (LLaMA, Mistral, Qwen2, Qwen3, Phi-3,
  Gemma, Gemma 2, Granite; float32 and int4: GroupQueryAttention with rotary, SkipSimplified-
  LayerNormalization, MatMulNBits), converted as a deployment pins them: one prompt step and one
  decoding step over a past buffer.
"""

from __future__ import annotations

import collections
import logging
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

HIDDEN, HEADS, LAYERS, VOCAB = 64, 4, 2, 200
BATCH, SEQUENCE = 2, 8
PAST_BUFFER = 32  # onnxruntime-genai's past/present buffer (its max_length)


@dataclass
class Model:
    """One benchmark model: its file, the input pins a deployment gives it, and how to make inputs."""

    name: str
    family: str
    path: Path
    pins: tuple[str, ...] = ()
    inputs: Callable[[int], dict[str, np.ndarray]] = field(default=lambda seed: {})
    contrib_ops: dict[str, int] = field(default_factory=dict)


def contrib_ops(path: Path) -> dict[str, int]:
    model = onnx.load(str(path), load_external_data=False)
    counted = collections.Counter(
        n.op_type
        for n in model.graph.node
        if n.domain == "com.microsoft" or n.op_type == "SimplifiedLayerNormalization"
    )
    return dict(sorted(counted.items()))


# --- transformers exports ----------------------------------------------------------------------------


_TEXT = {"vocab_size": VOCAB, "max_position_embeddings": 64}
_BERT_LIKE = {
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "intermediate_size": 128,
}
# transformers config and model class names, and the config's sizes in its own spelling
_ARCHITECTURES: dict[str, tuple[str, str, dict]] = {
    "bert": (
        "BertConfig",
        "BertModel",
        {**_BERT_LIKE, **_TEXT},
    ),
    "distilbert": (
        "DistilBertConfig",
        "DistilBertModel",
        {"dim": HIDDEN, "n_layers": LAYERS, "n_heads": HEADS, "hidden_dim": 128, **_TEXT},
    ),
    "gpt2": (
        "GPT2Config",
        "GPT2Model",
        {"n_embd": HIDDEN, "n_layer": LAYERS, "n_head": HEADS, "vocab_size": VOCAB, "n_positions": 64},
    ),
    "vit": (
        "ViTConfig",
        "ViTModel",
        {**_BERT_LIKE, "image_size": 32, "patch_size": 8},
    ),
    "llama": (
        "LlamaConfig",
        "LlamaModel",
        {**_BERT_LIKE, "num_key_value_heads": 2, **_TEXT},
    ),
}


def _transformers(arch: str) -> torch.nn.Module:
    import transformers

    torch.manual_seed(0)
    config_class, model_class, sizes = _ARCHITECTURES[arch]
    config = getattr(transformers, config_class)(**sizes, attn_implementation="eager")
    return getattr(transformers, model_class)(config).eval()


class _LastHidden(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, vision: bool) -> None:
        super().__init__()
        self.model, self.vision = model, vision

    def forward(self, first: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.vision:
            return self.model(pixel_values=first).last_hidden_state
        return self.model(input_ids=first, attention_mask=mask).last_hidden_state


def _text_inputs(seed: int) -> dict[str, np.ndarray]:
    """Token ids, and a mask of ones (seed 0, what convfix probes with) or with the last two
    positions of the second sequence padded (other seeds)."""
    rng = np.random.default_rng(seed)
    mask = np.ones((BATCH, SEQUENCE), np.int64)
    if seed:
        mask[1, -2:] = 0
    return {"input_ids": rng.integers(0, VOCAB, (BATCH, SEQUENCE)).astype(np.int64), "attention_mask": mask}


def _image_inputs(seed: int) -> dict[str, np.ndarray]:
    return {
        "pixel_values": np.random.default_rng(seed).standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
    }


def _export(arch: str, exporter: str, dynamic: bool, path: Path) -> None:
    vision = arch == "vit"
    feeds = _image_inputs(0) if vision else _text_inputs(0)
    names = list(feeds)
    axes = {name: {0: "batch"} if vision else {0: "batch", 1: "sequence"} for name in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _LastHidden(_transformers(arch), vision),
            tuple(torch.from_numpy(v) for v in feeds.values()),
            str(path),
            dynamo=exporter == "dynamo",
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes if dynamic else None,
        )


_ORT_MODEL_TYPES = {"bert": "bert", "distilbert": "bert", "gpt2": "gpt2", "vit": "vit"}


def _fused_by_onnxruntime(source: Path, arch: str, target: Path) -> None:
    from onnxruntime.transformers import optimizer

    optimized = optimizer.optimize_model(
        str(source), model_type=_ORT_MODEL_TYPES[arch], num_heads=HEADS, hidden_size=HIDDEN
    )
    optimized.save_model_to_file(str(target))


def _fused_by_onnxscript(source: Path, target: Path) -> None:
    import onnx_ir as ir
    from onnxscript.rewriter import ort_fusions

    model, _ = ort_fusions.optimize_for_ort(ir.load(str(source)))
    ir.save(model, str(target))


def _quantized(source: Path, target: Path, work: Path) -> None:
    """quantize_dynamic over the MatMuls, then onnxruntime's session optimizer writes the fused model.

    Run inside the work directory: the quantizer's shape inference writes scratch files into the current one.
    """
    import contextlib

    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared, plain = work / f"{target.stem}.prep.onnx", work / f"{target.stem}.qdq.onnx"
    with contextlib.chdir(work):
        quant_pre_process(str(source), str(prepared), skip_optimization=True)  # the quantizer needs shapes
        quantize_dynamic(
            str(prepared), str(plain), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8
        )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(plain), options, providers=["CPUExecutionProvider"])


def runs_in_onnxruntime(path: Path, inputs: Callable[[int], dict]) -> str | None:
    """Why onnxruntime cannot run a made model on its first inputs (the maker's defect), or None."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
        session.run(None, {k: v for k, v in inputs(0).items() if k in wanted})
    except Exception as exc:  # noqa: BLE001 - any failure means the made model is broken
        return f"onnxruntime cannot run what the tool made: {type(exc).__name__}: {str(exc)[:140]}"
    return None


def transformers_models(work: Path, arches: list[str]) -> Iterator[Model | tuple[str, str]]:
    """Every fused export; (name, why not) where making one failed."""
    logging.disable(logging.WARNING)
    for arch in arches:
        inputs = _image_inputs if arch == "vit" else _text_inputs
        for exporter in ("torchscript", "dynamo"):
            for dynamic in (False, True):
                stem = f"{arch}-{exporter}-{'dynamic' if dynamic else 'static'}"
                exported = work / f"{stem}.onnx"
                try:
                    _export(arch, exporter, dynamic, exported)
                except Exception as exc:  # noqa: BLE001 - the exporter's failure is the row
                    yield stem, f"export failed: {type(exc).__name__}: {str(exc)[:160]}"
                    continue
                makers = {"onnxscript": lambda t, e=exported: _fused_by_onnxscript(e, t)}
                if arch in _ORT_MODEL_TYPES:
                    makers["onnxruntime"] = lambda t, e=exported, a=arch: _fused_by_onnxruntime(e, a, t)
                for fuser, make in makers.items():
                    name = f"{stem}-{fuser}"
                    target = work / f"{name}.onnx"
                    try:
                        make(target)
                    except Exception as exc:  # noqa: BLE001
                        yield name, f"fusing failed: {type(exc).__name__}: {str(exc)[:160]}"
                        continue
                    broken = runs_in_onnxruntime(target, inputs)
                    if broken:
                        yield name, f"fusing: {broken}"
                        continue
                    yield Model(
                        name, f"fused by {fuser}", target, inputs=inputs, contrib_ops=contrib_ops(target)
                    )
                    if fuser == "onnxruntime" and arch in ("bert", "gpt2"):
                        quantized = work / f"{name}-int8.onnx"
                        try:
                            _quantized(target, quantized, work)
                        except Exception as exc:  # noqa: BLE001
                            yield f"{name}-int8", f"quantizing failed: {type(exc).__name__}: {str(exc)[:160]}"
                            continue
                        yield Model(
                            f"{name}-int8",
                            "quantized",
                            quantized,
                            inputs=inputs,
                            contrib_ops=contrib_ops(quantized),
                        )


# --- onnxruntime-genai decoders ----------------------------------------------------------------------

GENAI_ARCHES = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "granite")


def _decoder_config(arch: str):
    import transformers

    shared = {
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "vocab_size": VOCAB,
        "max_position_embeddings": 64,
    }
    if arch == "llama":
        return transformers.LlamaConfig(head_dim=16, **shared), transformers.LlamaForCausalLM
    if arch == "mistral":
        return transformers.MistralConfig(
            head_dim=16, sliding_window=4, **shared
        ), transformers.MistralForCausalLM
    if arch == "qwen2":
        return transformers.Qwen2Config(**shared), transformers.Qwen2ForCausalLM
    if arch == "qwen3":
        return transformers.Qwen3Config(head_dim=16, **shared), transformers.Qwen3ForCausalLM
    if arch == "phi3":
        config = transformers.Phi3Config(original_max_position_embeddings=64, pad_token_id=0, **shared)
        return config, transformers.Phi3ForCausalLM
    if arch == "gemma":
        return transformers.GemmaConfig(head_dim=16, **shared), transformers.GemmaForCausalLM
    if arch == "gemma2":
        config = transformers.Gemma2Config(head_dim=16, sliding_window=4, **shared)
        return config, transformers.Gemma2ForCausalLM
    return transformers.GraniteConfig(**shared), transformers.GraniteForCausalLM


def _hf_folder(arch: str, folder: Path) -> None:
    """A random checkpoint with a word-level tokenizer (the builder writes one beside the model)."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(0)
    config, kind = _decoder_config(arch)
    kind(config).eval().save_pretrained(str(folder))
    tokenizer = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="t0").save_pretrained(
        str(folder)
    )


def _decoder_inputs(model_path: Path, step: str) -> tuple[tuple[str, ...], Callable[[int], dict]]:
    """Pins and inputs of one prompt step (8 tokens) or one decoding step (after 8), batch 1, the
    past in a buffer of PAST_BUFFER as onnxruntime-genai passes it."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    pasts = [i for i in graph.input if i.name.startswith("past_key_values")]
    kv_heads, head = (pasts[0].type.tensor_type.shape.dim[i].dim_value for i in (1, 3))
    tokens, total = (SEQUENCE, SEQUENCE) if step == "prompt" else (1, SEQUENCE + 1)
    past_shape = (1, kv_heads, PAST_BUFFER, head)
    past_pins = (f"{p.name}={','.join(map(str, past_shape))}" for p in pasts)
    pins = (f"input_ids=1,{tokens}", f"attention_mask=1,{total}", *past_pins)

    def inputs(seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        feeds = {
            "input_ids": rng.integers(0, VOCAB, (1, tokens)).astype(np.int64),
            "attention_mask": np.ones((1, total), np.int64),
        }
        for p in pasts:
            feeds[p.name] = rng.standard_normal(past_shape).astype(np.float32)
        return feeds

    return pins, inputs


def genai_models(work: Path, arches: tuple[str, ...] = GENAI_ARCHES) -> Iterator[Model | tuple[str, str]]:
    from onnxruntime_genai.models.builder import create_model

    for arch in arches:
        folder = work / f"{arch}-hf"
        try:
            _hf_folder(arch, folder)
        except Exception as exc:  # noqa: BLE001
            yield f"genai-{arch}", f"checkpoint failed: {type(exc).__name__}: {str(exc)[:160]}"
            continue
        for precision in ("fp32", "int4"):
            out = work / f"genai-{arch}-{precision}"
            try:
                create_model(arch, str(folder), str(out), precision, "cpu", str(work / "genai-cache"))
            except Exception as exc:  # noqa: BLE001
                yield f"genai-{arch}-{precision}", f"builder failed: {type(exc).__name__}: {str(exc)[:160]}"
                shutil.rmtree(out, ignore_errors=True)
                continue
            path = out / "model.onnx"
            for step in ("prompt", "decode"):
                pins, inputs = _decoder_inputs(path, step)
                yield Model(
                    f"genai-{arch}-{precision}-{step}",
                    "onnxruntime-genai",
                    path,
                    pins=pins,
                    inputs=inputs,
                    contrib_ops=contrib_ops(path),
                )
