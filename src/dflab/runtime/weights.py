"""Published third-party weights: what is known, where it lives, and how to fetch and verify it.

``WEIGHTS`` lists the weight files dflab knows (name, URL, sha256, licence, the converter that maps
its keys onto our networks). :func:`fetch` downloads one with urllib (``file://`` URLs work too),
checks its sha256 and keeps it in :func:`weights_dir`. Third-party checkpoints are only ever read
with ``torch.load(weights_only=True)`` (:func:`load_torch_checkpoint`): no code runs from a file.

The ICPR 2020 checkpoints (Bonettini et al., "Video Face Manipulation Detection Through Ensemble of
CNNs", polimi-ispl/icpr2020dfdc) are served from the authors' Backblaze bucket. Their file names end
in the file's full sha256, which the authors' own loader checks (``torch.hub``'s ``check_hash``);
that is the hash pinned here.
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
    name: str
    url: str
    sha256: str | None
    description: str
    licence: str
    #: Key converter in :data:`dflab.detectors.deep.pretrained.CONVERTERS` (or "" when loaded as is).
    converter: str
    #: The detector that uses these weights.
    detector: str = ""
    #: Sub-folder of :func:`weights_dir` the file is kept in ("" = the folder itself).
    folder: str = ""

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def relative_path(self) -> str:
        return f"{self.folder}/{self.filename}" if self.folder else self.filename


_ICPR_BUCKET = "https://f002.backblazeb2.com/file/icpr2020"


_ICPR_LICENCE = "GPL-3.0 (polimi-ispl/icpr2020dfdc); trained on DFDC or FaceForensics++ under their terms"


_ICPR = {
    # (architecture, training set): sha256 (= the suffix of the published file name)
    ("EfficientNetB4", "DFDC"): "c9f3663e2116d3356d056a0ce6453e0fc412a8df68ebd0902f07104d9129a09a",
    ("EfficientNetB4", "FFPP"): "93aaad84946829e793d1a67ed7e0309b535e2f2395acb4f8d16b92c0616ba8d7",
    ("EfficientNetB4ST", "DFDC"): "86f0a0701b18694dfb5e7837bd09fa8e48a5146c193227edccf59f1b038181c6",
    ("EfficientNetB4ST", "FFPP"): "ccd016668071be5bf5fff68e446d055441739ec7113fb1a6eee998f08396ae92",
    ("EfficientNetAutoAttB4", "DFDC"): "72ed969b2a395fffe11a0d5bf0a635e7260ba2588c28683630d97ff7153389fc",
    ("EfficientNetAutoAttB4", "FFPP"): "b0c9e9522a7143cf119843e910234be5e30f77dc527b1b427cdffa5ce3bdbc25",
    ("EfficientNetAutoAttB4ST", "DFDC"): "4df0ef7d2f380a5955affa78c35d0942ac1cd65229510353b252737775515a33",
    ("EfficientNetAutoAttB4ST", "FFPP"): "ddb357503b9b902e1b925c2550415604c4252b9b9ecafeb7369dc58cc16e9edd",
    ("Xception", "DFDC"): "e826cdb64d73ef491e6b8ff8fce0e1e1b7fc1d8e2715bc51a56280fff17596f9",
    ("Xception", "FFPP"): "bb119e4913cb8f816cd28a03f81f4c603d6351bf8e3f8e3eb99eebc923aecd22",
}


_ICPR_NAMES = {"EfficientNetB4": ("efficientnetb4", "icpr-efficientnet"),
               "EfficientNetB4ST": ("efficientnetb4-st", "icpr-efficientnet-st"),
               "EfficientNetAutoAttB4": ("efficientnetb4-autoatt", "icpr-efficientnet-autoatt"),
               "EfficientNetAutoAttB4ST": ("efficientnetb4-autoatt-st", "icpr-efficientnet-autoatt-st"),
               "Xception": ("xception", "icpr-xception")}


def _icpr_table() -> dict[str, WeightFile]:
    table = {}
    for (arch, train_set), digest in _ICPR.items():
        short, converter = _ICPR_NAMES[arch]
        name = f"icpr-{short}-{train_set.lower()}"
        table[name] = WeightFile(
            name=name, url=f"{_ICPR_BUCKET}/{arch}_{train_set}_bestval-{digest}.pth", sha256=digest,
            description=f"ICPR 2020 {arch} trained on {train_set} (Bonettini et al.), one logit = fake",
            licence=_ICPR_LICENCE, converter=converter, detector=name)
    return table


#: BlazeFace front model in PyTorch (hollance/BlazeFace-PyTorch, converted from MediaPipe). The hash is
#: that of the copy in ../shared/weights/blazeface (no internet here to compare with the live file).
_BLAZEFACE = WeightFile(
    name="blazeface", url="https://github.com/hollance/BlazeFace-PyTorch/raw/master/blazeface.pth",
    sha256="54ecff653feaaaf1f7d44b6aff28fd2fc50e483a4e847563b6dd261369c43ba4",
    description="BlazeFace front-camera face detector (128x128), PyTorch state_dict", licence="Apache-2.0",
    converter="", detector="face detector `blazeface`", folder="blazeface")


#: Every weight file dflab knows, by name.
WEIGHTS: dict[str, WeightFile] = dict(sorted({**_icpr_table(), _BLAZEFACE.name: _BLAZEFACE}.items()))


def weights_dir() -> Path:
    return Path(os.environ.get(WEIGHTS_ENV) or Path.home() / ".cache" / "dflab" / "weights").expanduser()


def get(name: str) -> WeightFile:
    if name not in WEIGHTS:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(WEIGHTS)} (see `dflab weights list`)")
    return WEIGHTS[name]


def local_path(name: str) -> Path:
    """Where :func:`fetch` puts (or has put) the named weights by default."""
    return weights_dir() / get(name).relative_path


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
    if target.exists() and entry.sha256 and sha256_file(target) == entry.sha256:
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
        if entry.sha256 and digest != entry.sha256:
            raise WeightsError(f"{name}: downloaded file from {url} has sha256 {digest}, expected {entry.sha256} "
                               "(damaged or a different file); not kept")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def verify(name: str, path: str | Path) -> Path:
    """Check a weight file given by hand (``--weights PATH``) against the table's sha256."""
    path, entry = Path(path), get(name)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if entry.sha256 and sha256_file(path) != entry.sha256:
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
