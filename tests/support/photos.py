"""Photo files for tests: small solid-colour JPEGs, the labelled sets beside the repo, and a
fingerprint of a folder that proves originals were left alone."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO.parent / "shared" / "datasets"
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def write_photo(path: Path, colour: tuple[int, int, int], size: int = 64, seed: int = 0) -> Path:
    """A small JPEG of one colour (RGB) with a little noise, so each file is distinct."""
    rng = np.random.default_rng(seed)
    rgb = np.clip(np.array(colour) + rng.normal(0, 4, (size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


def tree_snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root: proves originals are untouched."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def require_dataset(name: str) -> Path:
    """The labelled set's folder; skips the test when ../shared/datasets lacks it."""
    folder = DATASETS / name
    if not folder.is_dir():
        pytest.skip(f"photo set {folder} is absent (tests read ../shared/datasets beside the repo)")
    return folder


def copy_dataset(name: str, target: Path) -> dict[str, str]:
    """Copy a labelled set into target; returns relative path -> label (the folder name)."""
    source = require_dataset(name)
    shutil.copytree(source, target)
    return {
        str(path.relative_to(target)): path.parent.name
        for path in sorted(target.rglob("*"))
        if path.is_file()
    }


@dataclass(frozen=True)
class Scanned:
    """A labelled set copied to a photo folder and sorted by a real scan (conftest)."""

    root: Path
    config: Path
    labels: dict[str, str]  # photo relative path -> category
