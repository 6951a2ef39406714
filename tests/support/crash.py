"""Kill -9 crash trials: a library of coloured photos, random bursts of changes to it, and a
trial that kills the daemon inside one and checks that nothing was lost (tests and, through
`python -m tests.support.trials`, bench/reliability.py)."""

from __future__ import annotations

import random
import shutil
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from photocluster import library
from photocluster.config import load_config
from tests.support.config import write_config
from tests.support.consistency import (
    assert_consistent,
    assert_tree_safe,
    photos_on_disk,
    wait_settled,
)
from tests.support.daemon import DaemonProcess
from tests.support.fakes import FakeEmbedder
from tests.support.photos import COLOURS, write_photo

FAST = "[watch]\nsettle_seconds = 0.3\nrescan_every_minutes = 0\n"
RECLUSTERED = "photocluster.recluster: recluster: "
PALETTE = list(COLOURS.values()) + [(230, 220, 30), (200, 200, 200)]


def make_library(base: Path, per_colour: int = 6, extra: str = FAST) -> Path:
    """base/photos/<colour>/<colour>_<i>.jpg and base/config.toml; returns the config path."""
    for name, colour in COLOURS.items():
        for index in range(per_colour):
            write_photo(base / "photos" / name / f"{name}_{index}.jpg", colour, seed=index)
    return write_config(base, extra)


def populate(base: Path) -> None:
    """What the daemon's first run leaves, made in-process (`scan`): faster than a daemon."""
    config = load_config(base / "config.toml")
    with library.open_library(config, "scan", lambda _: FakeEmbedder()) as lib:
        library.scan(lib, show_bar=False)


@dataclass
class Burst:
    """Random changes to the photo folder: copies, renames, moves, deletes, new folders."""

    base: Path
    rng: random.Random
    tag: str  # in every name this burst makes: bursts on one library never collide
    made: int = 0
    log: list[str] = field(default_factory=list)

    def existing(self) -> list[Path]:
        return [self.base / "photos" / rel for rel in sorted(photos_on_disk(self.base))]

    def step(self) -> None:
        kind = self.rng.choice(
            ["copy", "copy", "copy", "rename", "move", "delete", "duplicate", "modify", "folder"]
            + ["away"] * (self.rng.random() < 0.2)
        )
        files = self.existing()
        if kind in ("rename", "move", "delete", "duplicate", "modify") and len(files) < 10:
            kind = "copy"
        getattr(self, f"_{kind}")(files)
        self.log.append(kind)

    def _new(self, folder: Path) -> Path:
        self.made += 1
        colour = self.rng.choice(PALETTE)
        name, seed = f"n{self.tag}-{self.made:03d}.jpg", zlib.crc32(self.tag.encode()) + self.made
        return write_photo(folder / name, colour, size=40, seed=seed)

    def _copy(self, files: list[Path]) -> None:
        folder = self.rng.choice(["red", "green", "blue", "new"])
        self._new(self.base / "photos" / folder)

    def _rename(self, files: list[Path]) -> None:
        source = self.rng.choice(files)
        self.made += 1
        source.rename(source.with_name(f"r{self.tag}-{self.made:03d}.jpg"))

    def _move(self, files: list[Path]) -> None:
        source = self.rng.choice(files)
        target = self.base / "photos" / self.rng.choice(["red", "green", "blue", "moved"])
        target.mkdir(exist_ok=True)
        self.made += 1
        source.rename(target / f"m{self.tag}-{self.made:03d}.jpg")

    def _delete(self, files: list[Path]) -> None:
        self.rng.choice(files).unlink()

    def _duplicate(self, files: list[Path]) -> None:
        source = self.rng.choice(files)
        self.made += 1
        shutil.copyfile(source, source.with_name(f"d{self.tag}-{self.made:03d}.jpg"))

    def _modify(self, files: list[Path]) -> None:
        target = self.rng.choice(files)
        write_photo(target, self.rng.choice(PALETTE), size=40, seed=10_000 + self.made)
        self.made += 1

    def _folder(self, files: list[Path]) -> None:
        """A folder of photos moved in at once: the watcher asks for a rescan of it, which
        ends with an index save."""
        self.made += 1
        staging = self.base / f"staging-{self.tag}-{self.made}"
        for _ in range(4):
            self._new(staging)
        staging.rename(self.base / "photos" / f"folder{self.tag}-{self.made:03d}")

    def _away(self, files: list[Path]) -> None:
        """A folder moved out of the photo root, sometimes replaced by a symlink to where it
        went: its photos are gone, and nothing behind the symlink may be read or linked."""
        folders = sorted({file.parent for file in files} - {self.base / "photos"})
        if not folders:
            return
        folder = self.rng.choice(folders)
        self.made += 1
        outside = self.base / f"outside-{self.tag}-{self.made}"
        folder.rename(outside)
        if self.rng.random() < 0.5:
            folder.symlink_to(outside, target_is_directory=True)


HOOK_LINES = {
    "swap": ["test hook: tree built", "test hook: swapping", "test hook: swapped"],
    "save": ["test hook: saving index.ids", "test hook: saving index.stamp"],
}


def crash_trial(base: Path, seed: int, window: str) -> str:
    """One trial on an already populated, stopped library at `base`: start the daemon, change
    the folder while killing it with SIGKILL at a random moment (window "random") or inside a
    tree swap or an index save ("swap", "save"), change more while it is down, restart, let it
    settle, stop it and check everything. Returns what was hit ("" when the window was
    missed); raises AssertionError on any loss, duplicate or dangling link."""
    rng = random.Random(seed)
    env = {} if window == "random" else {
        "PHOTOCLUSTER_TEST_SLOW_SWAP": "0.4",
        "PHOTOCLUSTER_TEST_SLOW_SAVE": "0.4",
    }
    daemon = DaemonProcess(base / "config.toml", env)
    try:
        hit = _burst_and_kill(daemon, Burst(base, rng, f"t{seed}"), rng, window)
    finally:
        daemon.kill()  # already killed unless something failed: never leave one running
    after = Burst(base, rng, f"t{seed}down")
    for _ in range(rng.randrange(0, 6)):  # the folder keeps changing while the daemon is down
        after.step()
    restarted = DaemonProcess(base / "config.toml")
    try:
        wait_settled(base, timeout=90)
        code = restarted.stop(timeout=30)
    finally:
        restarted.kill()
    assert code == 0, restarted.log[-3000:]
    assert_tree_safe(base)
    assert_consistent(base)
    return hit


def _burst_and_kill(daemon: DaemonProcess, burst: Burst, rng: random.Random, window: str) -> str:
    daemon.wait_for_log("photocluster.watch.feed: watching", timeout=60)
    lines = [rng.choice(HOOK_LINES[window])] if window in HOOK_LINES else []
    seen = {line: daemon.log.count(line) for line in lines}
    killer = _Killer(daemon, lines, seen, rng.uniform(0.0, 3.0) if window == "random" else 20.0)
    killer.start()
    while not killer.done.is_set():
        burst.step()
        time.sleep(rng.uniform(0.0, 0.06))
        if burst.made > 400:  # never hit: stop feeding, the killer's deadline ends it
            killer.done.wait()
    killer.join()
    return killer.hit


class _Killer(threading.Thread):
    """SIGKILLs the daemon when one of `lines` appears once more in its log, or at `deadline`
    seconds from now."""

    def __init__(
        self, daemon: DaemonProcess, lines: list[str], seen: dict[str, int], deadline: float
    ) -> None:
        super().__init__(name="killer")
        self.target, self.lines, self.seen = daemon, lines, seen
        self.deadline = time.monotonic() + deadline
        self.done = threading.Event()
        self.hit = "" if lines else f"random {deadline:.2f} s"

    def run(self) -> None:
        try:
            while time.monotonic() < self.deadline and not self.hit:
                log = self.target.log
                self.hit = next((x for x in self.lines if log.count(x) > self.seen[x]), "")
                time.sleep(0.02)
            self.target.kill()
        finally:
            self.done.set()
