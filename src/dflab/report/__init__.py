"""The lab report: one document (``document``) built once from metrics.json and the plots, then
rendered to one self-contained HTML page (``html``) and to Markdown (``markdown``); ``tables`` formats
the numbers, ``plots`` draws the figures."""

from dflab.report.document import write_report

__all__ = ["write_report"]
