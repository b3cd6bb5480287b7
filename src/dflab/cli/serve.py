"""``dflab serve``: the command (FastAPI and uvicorn are imported only when it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dflab.cli.export import BackendOption
from dflab.runtime.choices import Backend


def serve_command(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Trained model folder or .zip."),
    detector: Optional[str] = typer.Option(
        None, "--detector", "-d", help="A ready-to-use detector (default: the shipped dflab-face)."),
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to listen on (default: this machine only; 0.0.0.0 opens it to the network)."),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="TCP port (0: any free port)."),
    max_upload_mb: float = typer.Option(200.0, "--max-upload-mb", min=0.001, max=100_000.0,
                                        help="Largest upload accepted, in MB (refused with 413 while it streams)."),
    max_jobs: int = typer.Option(32, "--max-jobs", min=1, max=10_000,
                                 help="Uploads in flight at a time (receiving, queued or scored); beyond: 503 + Retry-After."),
    max_video_seconds: float = typer.Option(600.0, "--max-video-seconds", min=1.0, max=86_400.0,
                                            help="Longest video accepted, in seconds."),
    backend: Backend = BackendOption,
) -> None:
    """Serve a web page and an HTTP API: upload a photo or a video, see P(fake), the faces and the heatmap.

    The page is at the printed address, the API documentation at /docs. Scoring uses the same function as `dflab predict`; queued photos are scored together in one batch."""
    import socket

    from dflab.cli.common import UserError, out_console
    from dflab.inference.models import load_scorer
    from dflab.runtime.progress import set_quiet

    set_quiet(True)  # no progress bars per request in the server's output

    if host == "" or any(ch.isspace() for ch in host):
        raise UserError(f"--host {host!r}: expected an address such as 127.0.0.1 or 0.0.0.0")
    scorer = load_scorer(model, detector, None, Backend(backend).value)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise UserError(f"--host {host}: cannot resolve ({err.strerror or err})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror or err})") from None
    sock.listen(128)
    sock.set_inheritable(True)

    import signal
    import threading

    import uvicorn

    from dflab.serve.app import create_app

    app = create_app(scorer, max_upload_bytes=int(max_upload_mb * 2 ** 20), max_jobs=max_jobs,
                     max_video_seconds=max_video_seconds, scoring_thread=False, warm_up=True)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else ('[::1]' if host == '::' else shown)}:{bound}/"
    out_console.print(f"dflab serve: {url}  (model {scorer.name}; API docs {url}docs; Ctrl+C stops)",
                      highlight=False, soft_wrap=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        out_console.print(f"note: listening on {host}, reachable from other machines", highlight=False)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    # The network runs on the main thread and the HTTP server on a thread, not the other way round:
    # PyTorch's OpenMP work ran 1.6-1.8x slower on a second thread here (benchmarks/RESULTS.md).
    http = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="dflab-serve-http", daemon=True)
    http.start()

    def stop_on_term(_signum, _frame):  # a service manager's stop: shut down as on Ctrl+C, not mid-write
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_term)
    try:
        app.state.scoring.run_here()
    except KeyboardInterrupt:
        pass
    finally:
        server.should_exit = True
        app.state.scoring.stop()
        http.join(timeout=10)
        app.state.scoring.discard_waiting()  # uploads queued when it stopped: deleted, not left in /tmp
