"""torchvision, timm and ultralytics for the architectures corpus, importable beside the local CPU torch.

The registry's torchvision 0.28.0 is a CUDA build: its C++ ops do not load with the CPU torch 2.13,
and installed into the venv it breaks `transformers` imports. So both are installed with --no-deps
into a folder of their own (pinned), put on sys.path by this process only, and torchvision's C++ ops
are given their schemas and CPU kernels in Python before it is imported (nms and roi_align, which
the detectors run; the exporters need only the schemas). ultralytics builds its models from its yaml
files with opencv (headless) and Pillow imported; its other dependencies are not needed for that.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

FOLDER = Path(__file__).resolve().parents[1] / ".cache" / "corpus-libs"
PINS = (
    "torchvision==0.28.0",
    "timm==1.0.31",
    "ultralytics==8.4.190",
    "opencv-python-headless==4.10.0.84",
    "pillow==13.0.0",
)
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "int sampling_ratio, bool aligned) -> Tensor",
    "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, "
    "int sampling_ratio, bool aligned) -> Tensor",
    "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) "
    "-> (Tensor, Tensor)",
    "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, int sampling_ratio) -> (Tensor, Tensor)",
    "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, "
    "SymInt pooled_height, SymInt pooled_width, int sampling_ratio, SymInt batch_size, SymInt channels, "
    "SymInt height, SymInt width) -> Tensor",
    "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width) -> (Tensor, Tensor)",
    "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, "
    "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, "
    "SymInt width) -> Tensor",
    "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, "
    "SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, "
    "SymInt offset_groups, bool use_mask) -> Tensor",
    "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, Tensor mask, "
    "Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, "
    "SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> (Tensor, Tensor, Tensor, "
    "Tensor, Tensor)",
)
_library: torch.library.Library | None = None


def _nms(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS in score order, as torchvision's C++ kernel."""
    from torchvision.ops.boxes import box_iou

    order = scores.argsort(descending=True)
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    overlaps = box_iou(dets[order], dets[order])
    keep = []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= overlaps[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.int64)]


def _roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    from torchvision.ops.roi_align import _roi_align

    return _roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)


def _dist_info(pin: str) -> str:
    """The folder pip writes for `name==version`."""
    name, version = pin.split("==")
    return f"{name.replace('-', '_')}-{version}.dist-info"


def ensure() -> None:
    """Install the pinned libraries once, put them on sys.path, and register torchvision's ops."""
    global _library
    missing = [pin for pin in PINS if not (FOLDER / _dist_info(pin)).is_dir()]
    if missing:
        FOLDER.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(FOLDER),
            *missing,
        ]
        subprocess.run(command, check=True)
    if str(FOLDER) not in sys.path:
        sys.path.insert(0, str(FOLDER))
    if _library is None:
        _library = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            _library.define(schema)
        _library.impl("nms", _nms, "CPU")
        _library.impl("roi_align", _roi_align, "CPU")
        import torchvision.extension

        # The detectors check for the C++ library before calling the ops it would have registered:
        # the kernels above stand in for it.
        torchvision.extension._has_ops = lambda: True
