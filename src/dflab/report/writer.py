"""Write the lab report: the plots, then the document rendered to ``report.html`` and ``report.md``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from dflab.report import html, markdown
from dflab.report.document import build_document
from dflab.report.plots import plot_robustness, save_figure, write_plots


def write_report(out_dir: str | Path, scores: pd.DataFrame, metrics: Mapping[str, Any]) -> dict[str, Path]:
    """Write plots into ``out_dir/plots/``, then ``out_dir/report.html`` (one self-contained page with
    the plots embedded) and ``out_dir/report.md`` (same tables, plots linked as ``plots/*.png``).

    Returns ``{"html": ..., "markdown": ..., "plots_dir": ...}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots_dir = out / "plots"
    plots = write_plots(scores, metrics, plots_dir)
    plots_extra = {}
    figures = [(out / figure["path"], figure.get("caption", ""))
               for task in (metrics.get("tasks") or {}).values()
               for entry in (task.get("detectors") or {}).values() if isinstance(entry, Mapping)
               for figure in entry.get("figures") or [] if (out / figure["path"]).exists()]
    if figures:
        plots_extra["detector_figures"] = figures
    if metrics.get("robustness"):
        plots_extra["robustness"] = save_figure(plot_robustness(metrics["robustness"]), plots_dir / "robustness")
    document = build_document(metrics, plots, plots_extra)
    html_path = out / "report.html"
    html_path.write_text(html.render(document), encoding="utf-8")
    markdown_path = out / "report.md"
    markdown_path.write_text(markdown.render(document, out), encoding="utf-8")
    return {"html": html_path, "markdown": markdown_path, "plots_dir": plots_dir}
