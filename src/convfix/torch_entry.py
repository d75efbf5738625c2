"""The PyTorch entry: export a module, repair the export, and check TF against PyTorch eager itself.

ONNX alone cannot reveal what an exporter got wrong (the TorchScript tracer bakes in the branch a
data-dependent `if` took on the example input): here the module's eager outputs are the reference for
every rewrite and for the TF model, and the export itself is checked against them.
"""

from __future__ import annotations

import functools
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convfix import engine, model_io, oracle, probes
from convfix.backends.base import Backend
from convfix.errors import ConvfixError
from convfix.journal import Report
from convfix.options import RepairOptions, resolve
from convfix.parity import compare_outputs

EXPORTERS = ("dynamo", "torchscript")


@dataclass
class TorchRepair:
    """The repair report plus how the module was exported (onnx_path: the export, kept only when a
    workdir was given; otherwise it went with the temporary folder)."""

    report: Report
    exporter: str
    onnx_path: Path | None
    export_notes: list[str] = field(default_factory=list)


def _past_one(args: tuple, input_names, dynamic_axes) -> tuple:
    """The example with every dynamic dim of size 1 made 2, the tensor repeated along it.

    torch.export takes a dim that is 1 in the example as the constant 1 wherever the model broadcasts
    or expands over it, whatever the dynamic axes say: timm's CoaT exported from a batch of one
    expands its class token to batch 1, and the export then fails at any other batch. From a batch of
    two, the same module exports a model that runs at every batch."""
    import torch

    grown = []
    for index, arg in enumerate(args):
        axes = (dynamic_axes or {}).get(input_names[index], {}) if index < len(input_names) else {}
        if isinstance(arg, torch.Tensor):
            for axis in sorted(axes):
                if -arg.dim() <= axis < arg.dim() and arg.shape[axis] == 1:
                    arg = torch.cat([arg, arg], dim=axis)
        grown.append(arg)
    return tuple(grown)


def _export_dynamo(module, args, path: Path, input_names, output_names, dynamic_axes) -> None:
    """torch.export-based export, with convfix's translations of the ATen operators neither torch's
    decompositions nor torchlib cover (convfix/translations/): the export itself succeeds."""

    from convfix import translations

    program = translations.export(
        module,
        _past_one(args, input_names, dynamic_axes),
        input_names=input_names,
        output_names=output_names,
        dynamic_axes=dynamic_axes or None,
    )
    program.save(str(path), external_data=False)


def _export_torchscript(module, args, path: Path, input_names, output_names, dynamic_axes) -> str:
    """TorchScript export; an op it cannot express is kept as an `org.pytorch.aten` node instead."""
    import torch

    common = dict(dynamo=False, input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes)
    try:
        torch.onnx.export(module, args, str(path), **common)
        return "torchscript"
    except torch.onnx.errors.UnsupportedOperatorError:
        fallthrough = torch.onnx.OperatorExportTypes.ONNX_FALLTHROUGH
        torch.onnx.export(module, args, str(path), operator_export_type=fallthrough, **common)
        return "torchscript (ONNX_FALLTHROUGH)"


def export(
    module,
    args: tuple,
    path: Path,
    *,
    exporter: str = "auto",
    input_names: Sequence[str],
    output_names: Sequence[str] | None = None,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> tuple[str, list[str]]:
    """Export with torch.export first, TorchScript as the fallback; return the exporter used and notes."""
    notes: list[str] = []
    order = EXPORTERS if exporter == "auto" else (exporter,)
    if any(e not in EXPORTERS for e in order):
        raise ConvfixError(f"exporter must be auto, dynamo or torchscript, not {exporter!r}")
    dynamic = {k: dict(v) for k, v in (dynamic_axes or {}).items()}
    for name in order:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if name == "dynamo":
                    _export_dynamo(module, args, path, list(input_names), output_names, dynamic)
                    return "dynamo", notes
                return _export_torchscript(
                    module, args, path, list(input_names), output_names, dynamic
                ), notes
        except Exception as exc:  # noqa: BLE001 - the next exporter gets its chance
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            notes.append(f"{name} export failed: {type(exc).__name__}: {first}")
    raise ConvfixError("no exporter could export the module: " + "; ".join(notes))


def _eager_outputs(module, probe_set, input_names: Sequence[str], output_names: Sequence[str]) -> list[dict]:
    import torch

    results = []
    with torch.no_grad():
        for probe in probe_set:
            out = module(*(torch.from_numpy(np.ascontiguousarray(probe[n])) for n in input_names))
            flat = out if isinstance(out, tuple | list) else (out,)
            results.append({n: t.detach().numpy() for n, t in zip(output_names, flat, strict=True)})
    return results


def dynamic_axes_of(
    dynamic_shapes: Mapping[str, Any] | Sequence[Any], input_names: Sequence[str]
) -> dict[str, dict[int, str]]:
    """torch.export's `dynamic_shapes` (per input, by name or in argument order: {axis: Dim} or
    [Dim or None per axis]) as the exporters' common `dynamic_axes` ({input: {axis: dim name}}), so
    that both exporters are given the same dims. A Dim keeps its name; Dim.AUTO or DYNAMIC gets one."""
    if isinstance(dynamic_shapes, Mapping):
        per_input = dict(dynamic_shapes)
    else:
        per_input = dict(zip(input_names, dynamic_shapes, strict=False))
    axes: dict[str, dict[int, str]] = {}
    for name, spec in per_input.items():
        if name not in input_names:
            raise ConvfixError(f"dynamic_shapes names {name!r}, not one of the inputs {list(input_names)}")
        if spec is None:
            continue
        items = spec.items() if isinstance(spec, Mapping) else enumerate(spec)
        dims = {int(axis): _dim_name(dim, name, int(axis)) for axis, dim in items if dim is not None}
        if dims:
            axes[name] = dims
    return axes


def _dim_name(dim: Any, input_name: str, axis: int) -> str:
    named = getattr(dim, "__name__", None)
    if isinstance(dim, str):
        return dim
    if isinstance(named, str) and named.isidentifier():
        return named
    return f"{input_name}_dim{axis}"


def repair_torch(
    module,
    example_args: tuple,
    options: RepairOptions | None = None,
    *,
    exporter: str = "auto",
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    dynamic_shapes: Mapping[str, Any] | Sequence[Any] | None = None,
    backend: Backend | None = None,
    workdir: str | os.PathLike | None = None,
    **option_fields: object,
) -> TorchRepair:
    """Export `module`, repair the ONNX, and verify every step and the TF model against eager PyTorch.

    Options as a RepairOptions or its fields as keywords (`output=`, `tf_out=`, `tflite=`). Dynamic
    dims as `dynamic_axes` ({input: {axis: name}}) or torch.export's `dynamic_shapes`, not both. The
    export is written in `workdir` if given, else in a temporary folder removed before returning.
    Probes: the example inputs themselves, then generated ones at several sizes of every dynamic axis,
    shifted so that sign-dependent branches are taken both ways.
    """
    options = resolve(options, option_fields)
    input_names = list(input_names or [f"input_{i}" for i in range(len(example_args))])
    if dynamic_shapes is not None:
        if dynamic_axes is not None:
            raise ConvfixError("give dynamic_axes or dynamic_shapes, not both")
        dynamic_axes = dynamic_axes_of(dynamic_shapes, input_names)
    module.eval()
    export_and_repair = functools.partial(
        _export_and_repair,
        module,
        example_args,
        options,
        exporter=exporter,
        input_names=input_names,
        output_names=output_names,
        dynamic_axes=dynamic_axes,
        backend=backend,
    )
    if workdir is not None:
        return export_and_repair(Path(workdir))
    with tempfile.TemporaryDirectory(prefix="convfix-torch-") as folder:
        result = export_and_repair(Path(folder))
    result.onnx_path = None
    return result


def _export_and_repair(
    module,
    example_args: tuple,
    options: RepairOptions,
    folder: Path,
    *,
    exporter: str,
    input_names: list[str],
    output_names: Sequence[str] | None,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None,
    backend: Backend | None,
) -> TorchRepair:
    onnx_path = folder / "exported.onnx"
    used, notes = export(
        module,
        example_args,
        onnx_path,
        exporter=exporter,
        input_names=input_names,
        output_names=list(output_names) if output_names else None,
        dynamic_axes=dynamic_axes,
    )
    exported = model_io.load(onnx_path)
    output_names = [v.name for v in exported.graph.outputs]
    specs = probes.input_specs(exported)
    pinned = probes.parse_input_shapes(options.input_shapes, specs)
    example = {n: np.asarray(a.detach().numpy()) for n, a in zip(input_names, example_args, strict=True)}
    probe_set = [example, *probes.make_probes(specs, pinned)]
    try:
        reference = _eager_outputs(module, probe_set, input_names, output_names)
    except RuntimeError as exc:  # the module needs dims of different names equal
        probe_set = [example, *probes.make_probes(specs, pinned, independent=False)]
        reference = _eager_outputs(module, probe_set, input_names, output_names)
        notes.append(f"the module cannot run its dynamic dims at different sizes ({exc}); probed equal")
    try:
        exported_outputs = oracle.evaluate(exported, probe_set, "checking the export").outputs
        fidelity = compare_outputs(reference, exported_outputs, options.tolerance)
        if not fidelity.ok:
            notes.append(
                f"the {used} export itself differs from PyTorch eager ({'; '.join(fidelity.problems[:3])}): "
                "the exporter changed the computation (a data-dependent branch traced as one path?); "
                "write data-dependent control flow with torch.cond and export with torch.export"
            )
    except oracle.OracleError as exc:
        notes.append(f"the export cannot be run by onnxruntime or onnx.reference: {exc}")
    report = engine.repair(
        onnx_path,
        options,
        backend=backend,
        reference=reference,
        reference_oracle="torch (eager module)",
        probe_set=probe_set,
    )
    report.notes = notes + report.notes
    if options.report_path is not None:
        report.write(options.report_path)
    return TorchRepair(report, used, onnx_path, notes)
