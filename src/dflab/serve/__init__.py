"""``dflab serve``: a web page and an HTTP API over the one prediction function of ``dflab predict``.

:func:`dflab.serve.app.create_app` builds the FastAPI application (a scorer can be injected);
:mod:`dflab.cli.serve` is the command line. The page is static HTML/CSS/JS shipped in
``static/`` (no build step, nothing fetched from elsewhere).
"""
