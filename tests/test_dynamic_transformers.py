"""Transformers exported by TorchScript with dynamic batch and sequence, repaired, and the SavedModel
checked against eager PyTorch at sizes convfix never probed. Each needs one mechanism of the class:

- scaled_dot_product_attention: heads split by a Reshape to a computed target (batch, seq, 3, 2, 8);
  written as a constant [0, 0, 3, 2, 8] (reshape-static-target, flagged before conversion), TF knows
  the head dims; a -1 beside zeros is written out too, as onnx2tf resolves it from its layout guess.
- GPT-2: ONNX's inference loses the dims of its Conv1D views (`x.size()[:-1] + (nf,)`) that TF knows;
  the conversion no longer takes a dim only ONNX lost for a sign that TF moved the tensor's axes.
- LLaMA: the rotary half `x.size(-1) // 2` is a static dim read at a scalar index, folded to 8 before
  the optimizer (shape_elements.py), so the rotary Slices have constant bounds.
- LLaMA by the dynamo exporter: its head views are Reshapes with allowzero=1 to computed targets,
  written as constants too (no literal 0 among them, so keeping a dim and a dim of 0 agree).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import needs_torch

import convfix
from convfix import RepairOptions

torch = needs_torch()
transformers = pytest.importorskip("transformers")


class _Sdpa(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(16, 48)

    def forward(self, x):
        b, s, _ = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, 2, 8).permute(2, 0, 3, 1, 4)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return y.transpose(1, 2).reshape(b, s, 16)


class _LastHidden(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids, mask):
        return self.model(input_ids=ids, attention_mask=mask).last_hidden_state


def _decoder(kind: str) -> torch.nn.Module:
    sizes = {"vocab_size": 100, "attn_implementation": "eager"}
    if kind == "gpt2":
        config = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=64, **sizes)
        model = transformers.GPT2Model(config)
    else:
        config = transformers.LlamaConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=64,
            max_position_embeddings=64,
            **sizes,
        )
        model = transformers.LlamaModel(config)
    return _LastHidden(model).eval()  # the exporter restores train mode from the outer module


def _text(batch: int, sequence: int, seed: int) -> tuple:
    ids = torch.from_numpy(np.random.default_rng(seed).integers(0, 100, (batch, sequence)))
    return ids, torch.ones(batch, sequence, dtype=torch.int64)


def _export(module, example: tuple, names: list[str], path, dynamo: bool = False) -> None:
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=dynamo,
            input_names=names,
            output_names=["y"],
            dynamic_axes=axes,
        )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sdpa", "gpt2", "llama", "llama-dynamo"])
def test_a_dynamic_transformer_repairs_and_matches_eager(target, tmp_path, kind):
    torch.manual_seed(0)
    if kind == "sdpa":
        module, names = _Sdpa().eval(), ["x"]
        example = (torch.randn(2, 6, 16),)
        fresh = [(torch.randn(3, 4, 16),), (torch.randn(1, 9, 16),)]
    else:
        module, names = _decoder(kind.split("-")[0]), ["ids", "mask"]
        example = _text(2, 6, 0)
        fresh = [_text(3, 4, 1), _text(1, 9, 2)]
    path = tmp_path / f"{kind}.onnx"
    _export(module, example, names, path, dynamo=kind.endswith("dynamo"))
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf", tflite=True), backend=target)
    assert report.status == "repaired", report.to_json()
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
    feeds = [{n: t.numpy() for n, t in zip(names, inputs, strict=True)} for inputs in fresh]
    for inputs, outputs in zip(fresh, target.run(tmp_path / "tf", feeds), strict=True):
        with torch.no_grad():
            expected = module(*inputs).numpy()
        np.testing.assert_allclose(outputs["y"], expected, rtol=1e-4, atol=1e-5)
