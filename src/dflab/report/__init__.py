"""The lab report: the blocks it is made of (``blocks``), built once from metrics.json and the plots
(``document``), rendered to one self-contained HTML page (``html``) and to Markdown (``markdown``) and written
with the plots (``writer``); ``tables`` formats the numbers, ``plots`` draws the figures."""

from dflab.report.writer import write_report

__all__ = ["write_report"]
