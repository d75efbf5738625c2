"""Build the bundled example models from PyTorch code: `python examples/build_examples.py [OUT_DIR]`.

entr.onnx         torch.special.entr, TorchScript + ONNX_FALLTHROUGH -> org.pytorch.aten::special_entr
dynamic_mean.onnx torch.mean(x, dim=1), dynamic batch axis
cond.onnx        torch.cond, torch.export-based exporter -> If
sinc.onnx        torch.sinc, ONNX_FALLTHROUGH -> org.pytorch.aten::sinc (see user_rules/sinc.py)
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from models import Entropy, RowMean, SignBranch, Sinc

FALLTHROUGH = torch.onnx.OperatorExportTypes.ONNX_FALLTHROUGH


def build(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    x = torch.randn(3, 8)
    names = {"input_names": ["x"], "output_names": ["y"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Entropy(), (x,), out_dir / "entr.onnx", dynamo=False, operator_export_type=FALLTHROUGH, **names
        )
        torch.onnx.export(
            Sinc(), (x,), out_dir / "sinc.onnx", dynamo=False, operator_export_type=FALLTHROUGH, **names
        )
        torch.onnx.export(
            RowMean(),
            (torch.randn(4, 20),),
            out_dir / "dynamic_mean.onnx",
            dynamo=False,
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            **names,
        )
        program = torch.onnx.export(SignBranch(), (x,), dynamo=True, verbose=False, **names)
        program.save(str(out_dir / "cond.onnx"), external_data=False)
    return sorted(out_dir.glob("*.onnx"))


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
    for path in build(target):
        print(path)
