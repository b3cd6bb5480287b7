"""Published third-party weights: fetch, verify and find the files the model families declare.

Each family declares its weight files beside its network (:func:`declare`: name, URL, sha256, licence,
where the file is kept); this module knows no detector and no network. :func:`fetch` downloads a
declared file with urllib (``file://`` URLs work too), checks its sha256 and keeps it in
:func:`weights_dir`; :func:`find` says where a declared file is on this machine. Third-party
checkpoints are only ever read with ``torch.load(weights_only=True)`` (:func:`load_torch_checkpoint`):
no code runs from a file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dflab.runtime.files import sha256_file

#: Where fetched weights are kept: ``$DFLAB_WEIGHTS`` or ``~/.cache/dflab/weights``.
WEIGHTS_ENV = "DFLAB_WEIGHTS"


class WeightsError(RuntimeError):
    """A weight file that cannot be fetched, verified or read; the message is one line."""


@dataclass(frozen=True)
class WeightFile:
    """One published weight file, as the family that uses it declares it."""

    name: str
    url: str
    sha256: str
    description: str
    licence: str
    #: Sub-folder of :func:`weights_dir` the file is kept in ("" = the folder itself).
    folder: str = ""
    #: The file's name when kept ("" = the last part of the URL).
    file: str = ""

    @property
    def filename(self) -> str:
        return self.file or self.url.rsplit("/", 1)[-1]

    @property
    def relative_path(self) -> str:
        return f"{self.folder}/{self.filename}" if self.folder else self.filename


#: Every weight file declared so far, by name (each family declares its own when its module is imported).
WEIGHTS: dict[str, WeightFile] = {}


def declare(*entries: WeightFile) -> dict[str, WeightFile]:
    """Add a family's weight files to :data:`WEIGHTS` (a name may be declared once; the same entry
    again is a no-op) and return them by name."""
    for entry in entries:
        known = WEIGHTS.get(entry.name)
        if known is not None and known != entry:
            raise ValueError(f"weights {entry.name!r} declared twice, differently")
        WEIGHTS[entry.name] = entry
    return {entry.name: entry for entry in entries}


def weights_dir() -> Path:
    return Path(os.environ.get(WEIGHTS_ENV) or Path.home() / ".cache" / "dflab" / "weights").expanduser()


def get(name: str) -> WeightFile:
    if name not in WEIGHTS:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(sorted(WEIGHTS))} "
                           "(see `dflab weights list`)")
    return WEIGHTS[name]


def local_path(name: str) -> Path:
    """Where :func:`fetch` puts (or has put) the named weights by default."""
    return weights_dir() / get(name).relative_path


def find(name: str) -> Path | None:
    """The named weights on this machine: where :func:`fetch` keeps them (``<folder>/<file>`` in
    :func:`weights_dir`), or the file alone in :func:`weights_dir`; None when neither is there."""
    entry = get(name)
    candidates = (weights_dir() / entry.relative_path, weights_dir() / entry.filename)
    return next((path for path in candidates if path.is_file()), None)


def require(name: str, explicit: str | Path | None = None) -> Path:
    """The file to load the named weights from: ``explicit`` when given (a file given by hand need only
    fit the network, which loading checks), else the declared file found on this machine (:func:`find`),
    checked against its sha256."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise WeightsError(f"{name}: weights file {path} not found")
        return path
    path = find(name)
    if path is None:
        raise WeightsError(f"{name}: weights not found at {local_path(name)}; run `dflab weights fetch {name}` "
                           f"(or set ${WEIGHTS_ENV}) or pass weights=PATH")
    return verify(name, path)


def fetch(name: str, dest: str | Path | None = None, url_override: str | None = None, *,
          timeout: float = 60.0) -> Path:
    """Download the named weights to ``dest`` (a folder or a file path; default :func:`weights_dir`),
    verify the sha256 and return the file's path. A present file with the right hash is not fetched
    again. ``url_override`` fetches the same file from elsewhere (a mirror, a ``file://`` URL)."""
    entry = get(name)
    url = url_override or entry.url
    if dest is None:
        target = local_path(name)
    else:
        dest = Path(dest)
        target = dest / entry.filename if (dest.is_dir() or dest.suffix == "") else dest
    if target.exists() and sha256_file(target) == entry.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=".partial-", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (known URLs)
                    shutil.copyfileobj(response, out, 1 << 20)
            except urllib.error.URLError as err:
                reason = getattr(err, "reason", err)
                raise WeightsError(
                    f"cannot download {name} from {url}: no network ({reason}); "
                    f"download it elsewhere and pass --weights PATH") from None
            except OSError as err:
                raise WeightsError(f"cannot download {name} from {url}: {err}; "
                                   f"download it elsewhere and pass --weights PATH") from None
        digest = sha256_file(tmp)
        if digest != entry.sha256:
            raise WeightsError(f"{name}: downloaded file from {url} has sha256 {digest}, expected {entry.sha256} "
                               "(damaged or a different file); not kept")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def verify(name: str, path: str | Path) -> Path:
    """Check a weight file against the sha256 its family declares."""
    path, entry = Path(path), get(name)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if sha256_file(path) != entry.sha256:
        raise WeightsError(f"{path}: sha256 does not match the published {name} weights")
    return path


def load_torch_checkpoint(path: str | Path) -> dict:
    """A state_dict: a ``.safetensors`` file, or a third-party ``.pth`` read with
    ``torch.load(weights_only=True)`` (no code runs either way). Unwraps the common
    ``{"state_dict": ...}`` / ``{"model": ...}`` / ``{"net": ...}`` wrappers of ``.pth`` files."""
    import pickle

    import torch

    if Path(path).suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except FileNotFoundError:
            raise WeightsError(f"{path}: weights file not found") from None
        except (SafetensorError, OSError) as err:
            raise WeightsError(f"{path}: not a readable safetensors file ({str(err).splitlines()[0]})") from None
        # A dflab model file keeps its network under "model." (an fp16 one: trained on in float32).
        if state and all(k.startswith("model.") for k in state):
            state = {k[len("model."):]: v for k, v in state.items()}
        return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}

    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: weights file not found") from None
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as err:
        raise WeightsError(f"{path}: not a plain PyTorch state_dict ({str(err).splitlines()[0]})") from None
    for wrapper in ("state_dict", "model", "net"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsError(f"{path}: expected a state_dict of tensors")
    return state
