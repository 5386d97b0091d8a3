"""Deployment of a trained architecture: LinearConv fusion, a fused state dict, and ONNX.

:func:`fuse_model` returns a copy of a trained model in eval mode with every
:class:`~search_spaces.ops.linearconv.LinearConv2d` replaced by the plain ``nn.Conv2d`` holding
its combined weight ``[W_p; Aᵀ V_p]`` (the paper's inference form: same outputs, fewer stored
numbers than primary filters + coefficients only when ``rank`` is small, and one ordinary
convolution). Outputs equal the unfused model's up to float rounding; they are bit-identical
in practice because the unfused LinearConv runs the very same combined weight in eval mode.

:func:`export_model` writes, under one folder:

``model_fused.pt``
    the fused model's ``state_dict`` (tensors only: ``torch.load(..., weights_only=True)``);
``arch.json``
    the architecture file; :func:`load_fused_model` rebuilds the module from the two;
``model.onnx``
    the fused model exported with ``torch.onnx.export`` (input ``input``:
    ``Tensor[batch, 3, H, W]`` float32 with a dynamic batch axis, output ``logits``:
    ``Tensor[batch, num_classes]``), checked with ``onnx.checker`` and run with ONNX Runtime
    on random inputs against PyTorch;
``export.json``
    what was written and measured: maximum absolute differences (fused vs original, ONNX vs
    PyTorch), opset, exporter, and the ONNX operator histogram.

Which operators export, and how (checked with torch 2.15, onnx 1.23, onnxruntime 1.31,
opsets 17, 18 and 20, on odd and even feature sizes; ONNX Runtime matched PyTorch to
about 1e-6):

=============== =========================================================================
operator        ONNX graph
=============== =========================================================================
conv            ``Conv`` (+ ``BatchNormalization`` for the backbone's norms)
linearconv      fused first, so a single ``Conv``; the unfused module would export too (its
                eval-mode weight is a cached constant) but carries a custom autograd
                function, which the fusion removes
scconv          SRU: GroupNorm as ``Reshape`` + ``InstanceNormalization`` + ``Reshape`` +
                ``Mul``/``Add`` (the exporter's decomposition), the importance weights as
                ``ReduceSum``/``Div``, the hard gate ``sigmoid(w·GN(x)) > 0.5`` as
                ``Sigmoid`` + ``Greater`` + ``Where``, the cross reconstruction (``roll``) as
                ``Slice`` + ``Concat``; CRU: ``Split``, ``Conv`` (grouped k×k and 1×1),
                ``GlobalAveragePool``, ``Softmax`` over the stacked pair, ``Mul``/``Add``;
                stride > 1 adds an ``AveragePool`` (ceil mode)
octconv         ``AveragePool`` (2×2, ceil mode, so odd sizes keep their border), ``Slice``
                for the high/low channel split, ``Conv`` for the four paths, ``Resize``
                (nearest, to the high-frequency size) and ``Concat``
=============== =========================================================================

The default exporter is the TorchScript-based one (``torch.onnx.export(..., dynamo=False)``):
it needs only ``torch`` and ``onnx`` and takes well under a second for a CIFAR ResNet.
``exporter="dynamo"`` uses the ``torch.export``-based exporter, which needs ``onnxscript``
(not in the ``onnx`` extra; about 10 s for the same model, same operators except
``ReduceMean`` for the pooling). SCConv's gate is a hard threshold: an activation within float
rounding of 0.5 can fall on the other side in ONNX Runtime than in PyTorch; that changes one
element of one map and is why the verification reports a maximum difference rather than
requiring equality.

Imports torch and ``search_spaces`` (onnx and onnxruntime when exporting); must not import
``evaluators``, optuna, ray, or the search and retraining modules of ``nas``.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import tempfile
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search_spaces.arch import Architecture, build_model, load_architecture
from search_spaces.ops.linearconv import LinearConv2d, fuse_linearconv

__all__ = [
    "DEFAULT_OPSET",
    "EXPORTERS",
    "ExportError",
    "ExportReport",
    "export_model",
    "export_onnx",
    "fuse_model",
    "load_fused_model",
    "max_output_diff",
    "onnx_operators",
    "verify_onnx",
]

DEFAULT_OPSET = 17
EXPORTERS = ("torchscript", "dynamo")
EXPORT_FORMAT = "convnas.export/1"


class ExportError(RuntimeError):
    """Export could not be done or did not verify; the message is one line naming why."""


@dataclass
class ExportReport:
    """What :func:`export_model` wrote and measured (paths relative to ``out_dir``)."""

    arch_id: str
    resolution: int
    state_dict: str
    arch: str
    onnx: str | None
    fused_max_abs_diff: float
    onnx_max_abs_diff: float | None
    opset: int | None
    exporter: str | None
    linearconv_fused: int
    onnx_operators: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"format": EXPORT_FORMAT, **asdict(self)}


def fuse_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` on CPU in float32 and eval mode, every LinearConv fused.

    ``model`` itself is left untouched (still usable for training).
    """
    fused = copy.deepcopy(model).to(device="cpu", dtype=torch.float32)
    fused.eval()
    fused = fuse_linearconv(fused)
    fused.eval()
    return fused


def _random_input(resolution: int, batch_size: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, 3, resolution, resolution, generator=gen)


def max_output_diff(
    a: nn.Module,
    b: nn.Module,
    *,
    resolution: int,
    batch_size: int = 4,
    seeds: tuple[int, ...] = (0,),
) -> float:
    """Largest ``|a(x) - b(x)|`` over random ``Tensor[batch_size, 3, res, res]`` inputs (eval).

    Both modules are put in eval mode (and left there).
    """
    a.eval()
    b.eval()
    worst = 0.0
    with torch.no_grad():
        for s in seeds:
            x = _random_input(resolution, batch_size, s)
            worst = max(worst, (a(x) - b(x)).abs().max().item())
    return worst


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    resolution: int,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
) -> Path:
    """Export ``model`` (CPU, float32, eval) to ONNX at ``path``, atomically.

    Input ``input``: ``Tensor[batch, 3, resolution, resolution]`` with a dynamic batch axis;
    output ``logits``. Raises :class:`ExportError` with the exporter's first message line.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if isinstance(opset, bool) or not isinstance(opset, int) or not 9 <= opset <= 23:
        raise ValueError(f"opset must be an integer between 9 and 23, got {opset!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    x = _random_input(resolution, 2, 0)
    # The temporary name keeps the .onnx suffix: the dynamo exporter picks the format from it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp.onnx")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter warns that it is deprecated in favour of dynamo, which
            # needs onnxscript; the choice is documented in the module docstring.
            warnings.simplefilter("ignore")
            if exporter == "torchscript":
                torch.onnx.export(
                    model,
                    (x,),
                    tmp,
                    dynamo=False,
                    opset_version=opset,
                    input_names=["input"],
                    output_names=["logits"],
                    dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                )
            else:
                try:
                    import onnxscript  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
                except ModuleNotFoundError:
                    raise ExportError(
                        "the dynamo ONNX exporter needs onnxscript (pip install onnxscript); "
                        "use the default torchscript exporter"
                    ) from None
                batch = torch.export.Dim("batch", min=1)
                torch.onnx.export(
                    model,
                    (x,),
                    tmp,
                    dynamo=True,
                    opset_version=opset,
                    input_names=["input"],
                    output_names=["logits"],
                    dynamic_shapes=({0: batch},),
                    external_data=False,
                    verbose=False,
                )
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except ExportError:
        raise
    except Exception as e:  # the exporters raise many types; the user needs the first line
        raise ExportError(f"ONNX export failed: {type(e).__name__}: {_first_line(e)}") from e
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "(no message)"


def onnx_operators(path: str | os.PathLike) -> dict[str, int]:
    """Histogram of ONNX node types in the graph at ``path`` (needs ``onnx``); also checks it."""
    import onnx

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    counts = Counter(n.op_type for n in proto.graph.node)
    return dict(sorted(counts.items()))


def verify_onnx(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    resolution: int,
    batch_sizes: tuple[int, ...] = (1, 3),
    seed: int = 0,
) -> float:
    """Largest ``|onnxruntime(x) - model(x)|`` over random inputs of each batch size.

    Needs ``onnxruntime`` (``pip install convnas[onnx]``); runs on its CPU provider.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    model = model.eval()
    worst = 0.0
    with torch.no_grad():
        for i, n in enumerate(batch_sizes):
            x = _random_input(resolution, n, seed + i)
            ref = model(x).numpy()
            out = session.run(None, {"input": x.numpy()})[0]
            if out.shape != ref.shape:
                raise ExportError(
                    f"ONNX output shape {out.shape} differs from PyTorch's {ref.shape}"
                )
            worst = max(worst, float(abs(out - ref).max()))
    return worst


def _atomic_torch_save(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def export_model(
    model: nn.Module,
    arch: Architecture,
    out_dir: str | os.PathLike,
    *,
    resolution: int | None = None,
    onnx: bool = True,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
    atol: float = 1e-4,
) -> ExportReport:
    """Fuse ``model`` and write the deployment files (see the module docstring) to ``out_dir``.

    ``resolution`` defaults to the architecture's. The fused model must match ``model`` within
    ``atol`` (relative to the largest logit, at least 1) or :class:`ExportError` is raised and
    nothing is written. With ``onnx`` the ONNX file is written too; if the ``onnx`` package is
    not installed the report says so in ``notes`` and ``onnx`` is None, and without
    ``onnxruntime`` the file is written but not run (``onnx_max_abs_diff`` None, a note). An
    ONNX model that does not match PyTorch within the same tolerance raises
    :class:`ExportError`.
    """
    res = arch.resolution if resolution is None else resolution
    out = Path(out_dir)
    n_linear = sum(isinstance(m, LinearConv2d) for m in model.modules())
    reference = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    fused = fuse_model(model)
    with torch.no_grad():
        scale = max(1.0, reference(_random_input(res, 4, 0)).abs().max().item())
    fused_diff = max_output_diff(reference, fused, resolution=res, seeds=(0, 1))
    if fused_diff > atol * scale:
        raise ExportError(
            f"the fused model differs from the trained one by {fused_diff:.3g} "
            f"(> {atol * scale:.3g})"
        )
    out.mkdir(parents=True, exist_ok=True)
    _atomic_torch_save(fused.state_dict(), out / "model_fused.pt")
    arch.save(out / "arch.json")
    report = ExportReport(
        arch_id=arch.arch_id,
        resolution=res,
        state_dict="model_fused.pt",
        arch="arch.json",
        onnx=None,
        fused_max_abs_diff=fused_diff,
        onnx_max_abs_diff=None,
        opset=None,
        exporter=None,
        linearconv_fused=n_linear,
    )
    if onnx and importlib.util.find_spec("onnx") is None:
        # torch.onnx.export itself needs the onnx package; the state dict is still useful.
        report.notes.append(
            "onnx is not installed, so model.onnx was not written (pip install 'convnas[onnx]')"
        )
    elif onnx:
        export_onnx(fused, out / "model.onnx", resolution=res, opset=opset, exporter=exporter)
        report.onnx, report.opset, report.exporter = "model.onnx", opset, exporter
        report.onnx_operators = onnx_operators(out / "model.onnx")
        try:
            report.onnx_max_abs_diff = verify_onnx(out / "model.onnx", fused, resolution=res)
        except ModuleNotFoundError:
            report.notes.append(
                "onnxruntime is not installed: the ONNX file was not run (pip install onnxruntime)"
            )
        if report.onnx_max_abs_diff is not None and report.onnx_max_abs_diff > atol * scale:
            raise ExportError(
                f"ONNX Runtime's outputs differ from PyTorch's by {report.onnx_max_abs_diff:.3g} "
                f"(> {atol * scale:.3g}); {out / 'model.onnx'} is not trustworthy"
            )
    _atomic_write_text(out / "export.json", json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def load_fused_model(
    arch: Architecture | str | os.PathLike, state_dict: str | os.PathLike
) -> nn.Module:
    """Rebuild a fused model from its architecture (object or file) and ``model_fused.pt``.

    The state dict is loaded with ``weights_only=True`` (no arbitrary unpickling).
    """
    if not isinstance(arch, Architecture):
        arch = load_architecture(arch)
    model = fuse_linearconv(build_model(arch)).eval()
    state = torch.load(state_dict, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model
