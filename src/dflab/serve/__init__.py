"""``dflab serve``: a web page and an HTTP API over the one prediction function of ``dflab predict``.

:func:`dflab.serve.app.create_app` builds the FastAPI application (a scorer can be injected);
:mod:`dflab.cli.serve` is the command line. Beside it: receiving an upload (``receive``), checking it
(``uploads``), the work queue (``queue``, which scores through :mod:`dflab.inference`), a job's answer
(``answers``), the memory ceiling (``memory``) and the API page (``docs``). The page is static HTML/CSS/JS shipped in
``static/`` (no build step, nothing fetched from elsewhere).
"""
