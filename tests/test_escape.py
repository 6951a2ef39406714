"""Nothing outside the photo root is ever read or linked, state files are private, and the
weights unpickler runs no code: symlinks out of the photo folder (to /etc/passwd, to the state
directory, to the cluster tree, a folder swapped for a symlink), file modes under a permissive
umask, and crafted pickles.
"""

from __future__ import annotations

import importlib
import os
import pickle
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from photocluster import library, locking, status, weights
from photocluster.config import load_config
from photocluster.embedder import WeightsFile
from photocluster.errors import StateError, WeightsError
from photocluster.store import Store
from tests.support.consistency import assert_consistent, assert_tree_safe, wait_settled
from tests.support.crash import RECLUSTERED, make_library, populate
from tests.support.daemon import DaemonProcess, wait_until
from tests.support.fakes import FakeEmbedder
from tests.support.photos import COLOURS, write_photo

pytestmark = pytest.mark.timeout(120)


def plant_escapes(base: Path) -> list[str]:
    """Symlinks inside the photo root to things outside it; returns their relative names."""
    root, outside = base / "photos", base / "outside"
    write_photo(outside / "secret.jpg", COLOURS["red"], seed=90)
    write_photo(outside / "album" / "private.jpg", COLOURS["blue"], seed=91)
    (base / "state").mkdir(exist_ok=True, mode=0o700)
    links = {
        "passwd.jpg": "/etc/passwd",
        "etc": "/etc",
        "secret.jpg": str(outside / "secret.jpg"),
        "album": str(outside / "album"),
        "state.jpg": str(base / "state" / "catalog.sqlite"),
        "state": str(base / "state"),
        "clusters.jpg": str(base / "clusters"),
        "clusters": str(base / "clusters"),
        "generations": str(base / ".clusters.generations"),
        "climb.jpg": "../outside/secret.jpg",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    return list(links)


def taken_in(base: Path, names: list[str]) -> list[str]:
    """Catalog rows (photos or failures) at or below any of `names`."""
    rows = all_rows(base / "state")
    return [p for p in rows if any(p == n or p.startswith(n + "/") for n in names)]


def all_rows(state: Path) -> list[str]:
    store = Store.open_readonly(state)
    try:
        return [record.path for record in store.files()]
    finally:
        store.close()


@pytest.fixture
def base(tmp_path: Path) -> Iterator[Path]:
    make_library(tmp_path)
    yield tmp_path


# ---------------------------------------------------------------------------- symlinks


def test_a_scan_reads_and_links_nothing_behind_a_symlink(base: Path) -> None:
    populate(base)  # the cluster tree and state exist, so the links below lead somewhere
    names = plant_escapes(base)
    embedder = FakeEmbedder()
    config = load_config(base / "config.toml")
    with library.open_library(config, "scan", lambda _: embedder) as lib:
        library.scan(lib, show_bar=False)
    assert taken_in(base, names) == []
    assert embedder.embedded == 0
    assert_tree_safe(base)
    assert_consistent(base)


def test_a_rescan_of_a_folder_swapped_for_a_symlink_does_not_follow_it(base: Path) -> None:
    populate(base)
    root, embedder = base / "photos", FakeEmbedder()
    (root / "green").rename(base / "green-outside")
    write_photo(base / "green-outside" / "new_outside.jpg", COLOURS["green"], seed=92)
    (root / "green").symlink_to(base / "green-outside", target_is_directory=True)
    config = load_config(base / "config.toml")
    with library.open_library(config, "run", lambda _: embedder) as lib:
        library.sync(lib, "green", show_bar=False)  # what the watcher asks for
        library.sync(lib, "green/deeper/still", show_bar=False)
    assert embedder.embedded == 0
    assert not [p for p in all_rows(base / "state") if p.startswith("green")]
    assert_tree_safe(base)
    assert_consistent(base)


def test_the_daemon_reads_and_links_nothing_behind_symlinks_even_a_swapped_folder(
    base: Path,
) -> None:
    daemon = DaemonProcess(base / "config.toml")
    try:
        daemon.wait_for_log(RECLUSTERED, timeout=60)
        wait_settled(base)
        names = plant_escapes(base)  # while it runs
        root = base / "photos"
        (root / "green").rename(base / "green-outside")  # a folder swapped for a symlink
        (root / "green").symlink_to(base / "green-outside", target_is_directory=True)
        write_photo(base / "green-outside" / "late.jpg", COLOURS["green"], seed=93)
        wait_until(lambda: not taken_in(base, ["green"]), 20, "green/ to leave the catalog")
        write_photo(root / "red" / "marker.jpg", COLOURS["red"], seed=94)  # events after them
        wait_settled(base)
        assert taken_in(base, [*names, "green"]) == []
    finally:
        assert daemon.stop() == 0
    assert_tree_safe(base)
    assert_consistent(base)


def test_a_state_directory_inside_a_symlinked_photo_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "photos").symlink_to(tmp_path / "data", target_is_directory=True)
    config_path = tmp_path / "config.toml"
    config_path.write_text('[paths]\nphotos = "photos"\nclusters = "clusters"\n'
                           'state = "data/.photocluster"\n')
    config = load_config(config_path)  # the config check compares the names only
    with (
        pytest.raises(StateError, match="must lie outside each other"),
        library.open_library(config, "scan", lambda _: FakeEmbedder()),
    ):
        pass
    assert not (tmp_path / "data" / ".photocluster").exists()


# ---------------------------------------------------------------------------- file modes


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("permissive_umask")
def test_state_files_are_private_even_under_a_permissive_umask(tmp_path: Path) -> None:
    config = load_config(make_library(tmp_path))
    with library.open_library(config, "run", lambda _: FakeEmbedder()) as lib:
        library.scan(lib, show_bar=False)
        status.publish(config.paths.state, {"state": "idle", "backlog": 0})
        status.publish(config.paths.state, {"state": "idle", "backlog": 1})  # replaced
        write_photo(tmp_path / "photos" / "red" / "one_more.jpg", COLOURS["red"], seed=95)
        library.sync(lib, show_bar=False)  # the WAL and its index exist while open
        state = config.paths.state
        files = ["catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm", "writer.lock",
                 status.DAEMON_STATUS]
        open_modes = {name: _mode(state / name) for name in files}
    weights_dir = library.weights_dir(config)
    weights_dir.mkdir(mode=0o700)
    (weights_dir / "w.weights.h5").write_bytes(b"weights")
    weights._remember(weights_dir, WeightsFile(weights_dir / "w.weights.h5", "torch", "0", "t"))
    assert _mode(state) == 0o700
    assert open_modes == dict.fromkeys(files, 0o600)
    closed = ["index.f32", "index.ids", "index.stamp", "weights/weights.json"]
    assert {name: _mode(state / name) for name in closed} == dict.fromkeys(closed, 0o600)
    leftovers = [p.name for p in state.iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.usefixtures("permissive_umask")
def test_an_existing_world_readable_state_directory_is_made_private(tmp_path: Path) -> None:
    make_library(tmp_path)
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    (state / status.DAEMON_STATUS).write_text("{}")
    os.chmod(state / status.DAEMON_STATUS, 0o644)
    config = load_config(tmp_path / "config.toml")
    with library.open_library(config, "run", lambda _: FakeEmbedder()):
        status.publish(state, {"state": "idle"})
    assert _mode(state) == 0o700
    assert _mode(state / status.DAEMON_STATUS) == 0o600


@pytest.mark.usefixtures("permissive_umask")
def test_the_writer_lock_alone_creates_a_private_state_directory(tmp_path: Path) -> None:
    with locking.hold(tmp_path / "state" / locking.STATE_LOCK, "scan"):
        pass
    assert _mode(tmp_path / "state") == 0o700
    assert _mode(tmp_path / "state" / "writer.lock") == 0o600


# ---------------------------------------------------------------------------- the unpickler


class _Payload:
    """Runs a shell command when unpickled by a permissive unpickler."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch /tmp/photocluster-escape-pwned",))


class _HugeArray:
    """An ndarray pickle (only the admitted names) whose state claims far more elements than
    its buffer holds."""

    def __reduce__(self) -> tuple[object, ...]:
        state = (1, (10**12,), np.dtype("f4"), False, b"\0" * 4)
        reconstruct = importlib.import_module("numpy._core.multiarray")._reconstruct
        return (reconstruct, (np.ndarray, (0,), b"b"), state)


def _checkpoint(kernel: object) -> bytes:
    convs = {f"Conv_{i}": {"kernel": np.ones((3, 3, 2, 2), np.float32),
                           "bias": np.zeros(2, np.float32)} for i in range(13)}
    convs["Conv_0"]["kernel"] = kernel  # type: ignore[assignment]
    return pickle.dumps({"VGG16_0": convs}, protocol=4)


def test_an_object_array_carrying_a_payload_is_refused_before_it_runs() -> None:
    payload = np.array([1.0, _Payload()], dtype=object)
    with pytest.raises(WeightsError, match="refused"):
        weights.load_checkpoint(_checkpoint(payload))
    assert not Path("/tmp/photocluster-escape-pwned").exists()


def test_an_object_array_of_harmless_values_is_refused_as_not_float() -> None:
    with pytest.raises(WeightsError, match="non-float"):
        weights.load_checkpoint(_checkpoint(np.array([1.0, "x", None], dtype=object)))


@pytest.mark.parametrize(
    "module_name",
    [("builtins", "eval"), ("numpy", "load"), ("numpy.lib.format", "read_array"),
     ("subprocess", "Popen"), ("pickle", "loads"), ("_codecs", "encode")],
)
def test_only_the_three_ndarray_names_are_admitted(module_name: tuple[str, str]) -> None:
    module, name = module_name
    data = b"\x80\x04c" + f"{module}\n{name}\n".encode() + b"."
    with pytest.raises(WeightsError, match="refused"):
        weights.load_checkpoint(data)


def test_an_ndarray_state_that_lies_about_its_size_is_a_weights_error() -> None:
    with pytest.raises(WeightsError):
        weights.load_checkpoint(_checkpoint(_HugeArray()))
