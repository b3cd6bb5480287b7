"""The ``dflab`` command run in processes forked from one that has imported it already.

A case of the hostile-input corpus is a whole ``dflab`` process, and most of such a process's time is
its imports (PyTorch, timm, scikit-learn: 5-8 s), paid again by each of the 80-odd cases. Here one
server process imports the command and its libraries once; each run is a child forked from it, given
its own arguments, working folder, environment and output files, running the console entry point
(``dflab.cli.main``), its exit handlers, and exiting with the command's status, as the installed
``dflab`` does. The server never runs a PyTorch or onnxruntime operation, so no thread pool exists to
be broken by the fork.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path


class ForkedEntryPoint:
    """``run(args, cwd, env, timeout)`` -> (exit status, stdout, stderr), like ``subprocess.run``."""

    def __init__(self, env: dict[str, str]):
        self.server = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       env=env, text=True)

    def run(self, args: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, str, str]:
        out, err = Path(cwd).parent / "entry.stdout", Path(cwd).parent / "entry.stderr"
        request = {"args": args, "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err),
                   "timeout": timeout}
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        ready, _, _ = select.select([self.server.stdout], [], [], timeout + 30)
        if not ready:
            raise TimeoutError(f"dflab {' '.join(args)}: no answer in {timeout + 30:.0f} s")
        status = json.loads(self.server.stdout.readline())["status"]
        return status, out.read_text(errors="replace"), err.read_text(errors="replace")

    def close(self) -> None:
        self.server.stdin.close()
        self.server.wait(timeout=30)


def _child(request: dict) -> None:
    """In the forked child: become the dflab command of ``request``; never returns."""
    status = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(handle, fd)
            os.close(handle)
        sys.argv = ["dflab", *request["args"]]
        import atexit

        from dflab.cli import main

        try:
            if os.environ.get("DFLAB_TEST_CRASH"):  # how tests/test_hostile_inputs.py shows a crash is seen
                raise RuntimeError("crash on purpose")
            main()
            status = 0
        except SystemExit as exit_:
            code = exit_.code
            status = code if isinstance(code, int) else (0 if code is None else 1)
            if code is not None and not isinstance(code, int):
                print(code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - as the interpreter does: the traceback, then status 1
            import traceback

            traceback.print_exc()
            status = 1
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def _serve() -> None:
    import pkgutil
    import time

    import dflab

    # Everything a command may import, once: every dflab module and, through them, the libraries.
    for module in pkgutil.walk_packages(dflab.__path__, prefix="dflab."):
        if module.name != "dflab.__main__":
            __import__(module.name)
    import facenet_pytorch  # noqa: F401 - imported by the face detector when first used
    import timm  # noqa: F401

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        deadline = time.monotonic() + float(request["timeout"])
        while True:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                _, wait_status = os.waitpid(pid, 0)
                break
            time.sleep(0.01)
        sys.stdout.write(json.dumps({"status": os.waitstatus_to_exitcode(wait_status)}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve()
