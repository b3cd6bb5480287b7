"""``dflab export``: a CNN detector's network as an ONNX graph, and the ``--backend`` choice of the
scoring commands (:mod:`dflab.detectors.deep.onnx_backend` does the work)."""

from __future__ import annotations

from pathlib import Path

import typer

from dflab.runtime.choices import Backend

BackendOption = typer.Option(
    Backend.auto, "--backend",
    help="What runs a CNN detector's network: onnx = onnxruntime (the network is exported first when the model "
         "holds no graph), torch = PyTorch, auto = onnxruntime on the CPU (a graph the model holds, see `dflab export`, else one exported once into "
         "the user cache), PyTorch on a GPU.")

#: Inputs of the export's self-check: enough to see a wrong graph, few enough to take no time.
CHECK_IMAGES = 4
#: Largest |logit difference| between the graph and PyTorch the self-check accepts (float32 rounding
#: is about 1e-6; a graph of another network is off by far more).
CHECK_TOLERANCE = 1e-3


def export_command(
    model: str = typer.Argument(..., metavar="MODEL",
                                help="A trained model folder or .zip, or a ready detector's name (dflab-face)."),
    onnx: Path = typer.Option(
        ..., "--onnx", metavar="OUT.onnx",
        help="Graph file to write. Inside MODEL's folder it becomes one of the model's files (its sha256 in "
             "config.json) and every command then scores with onnxruntime."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No informational messages."),
) -> None:
    """Export a CNN detector's network to ONNX (float32, dynamic batch; preprocessing and mirror TTA stay in dflab)."""
    import numpy as np
    import torch

    from dflab.cli.common import UserError, output_file, out_console
    from dflab.detectors import create, load_detector
    from dflab.detectors.deep.onnx_backend import OPSET, OnnxBackend, attach_graph, export_graph, exportable
    from dflab.detectors.modelfile import SAFE_FILE_NAME
    from dflab.detectors.ready import ready_model_dir, ready_models
    from dflab.runtime.progress import set_quiet

    set_quiet(quiet)
    if onnx.suffix.lower() != ".onnx":
        raise UserError(f"{onnx}: --onnx must name a .onnx file")
    if Path(model).exists():
        scorer, folder = load_detector(model, device="cpu"), Path(model)
    elif model in ready_models():
        scorer, folder = create(model, device="cpu").fit(), ready_model_dir(model)
    else:
        raise UserError(f"{model}: no such model folder or .zip, nor a ready detector ({', '.join(ready_models())})")
    try:
        detector = exportable(scorer)
    except ValueError as err:
        raise UserError(str(err)) from None
    into_model = folder.is_dir() and onnx.parent.resolve() == folder.resolve()
    if into_model and not SAFE_FILE_NAME.match(onnx.name):
        raise UserError(f"{onnx}: not a name a model file may have (letters, digits, '_', '-', '.')")
    graph = export_graph(detector.model_, int(detector.input_size))
    # Self-check on a few seeded inputs: the graph must compute what the network computes.
    batch = torch.randn(CHECK_IMAGES, 3, detector.input_size, detector.input_size,
                        generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = detector.model_.eval()(batch).numpy()
    got = OnnxBackend(graph, detector.model_, where=onnx)(batch).numpy()
    difference = float(np.abs(got - expected).max())
    if not difference <= CHECK_TOLERANCE:
        raise UserError(f"{onnx}: the exported graph's logits differ from PyTorch's by {difference:.2g} "
                        f"(more than {CHECK_TOLERANCE}); not written")
    if into_model:
        attach_graph(folder, graph, onnx.name)
        where = f"in the model {folder} (checked by its sha256 on load; scored with onnxruntime unless --backend torch)"
    else:
        output_file(onnx, "--onnx").write_bytes(graph)
        where = "outside the model (the model itself is unchanged)"
    out_console.print(f"graph: {onnx}  ({len(graph) / 2**20:.1f} MB, opset {OPSET}, input images "
                      f"N x 3 x {detector.input_size} x {detector.input_size}, output logits N x 1; "
                      f"max |logit difference| to PyTorch {difference:.1g}) {where}", highlight=False, soft_wrap=True)
