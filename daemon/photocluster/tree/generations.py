"""Generations of the cluster tree: build one beside the live one, swap it in, keep it current.

For cluster_root ~/Pictures/clusters the layout is:

    ~/Pictures/clusters -> .clusters.generations/gen-000007             (relative symlink)
    ~/Pictures/.clusters.generations/gen-000007/cluster-001/IMG_1.jpg -> ../../../Photos/IMG_1.jpg
    ~/Pictures/.clusters.generations/gen-000007/_overview/cluster-001.jpg, elbow.png

A recluster builds gen-<N+1> under a temp name, renames it, then repoints cluster_root in one
os.replace. The previous generation stays (a file manager may be open in it); older ones go.
A link the live generation already holds (same folder, name and target) is carried over as a
hard link to that symlink instead of a new one: symlinks are never changed in place, so
generations can share them, and a rebuild with stable cluster names allocates inodes only for
what changed (see ClusterTree.build).
Links point at the originals; nothing under photo_root is ever written, moved or deleted.
The generations folder, each generation and each cluster folder are 0700 whatever the umask
(the names of the photos are private; a symlink has no mode of its own), `_overview` files 0600.
One writer at a time (the daemon's worker): a ClusterTree is not thread-safe.

Why one module of this length: building, swapping, repairing and pruning generations share one
invariant (which generation the live symlink names, and when a generation is complete), which
is checked best where all of them can be read together.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import re
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from photocluster import fsutil
from photocluster.errors import StateError
from photocluster.fsutil import TEMP_PREFIX
from photocluster.progress import Pulse, no_pulse
from photocluster.records import Taken
from photocluster.tree.names import candidate_names, link_name
from photocluster.tree.plan import (
    OVERVIEW,
    LinkPlan,
    check_cluster,
    check_photo,
    check_plan,
)
from photocluster.tree.ranked import DUPLICATES, SIMILAR

logger = logging.getLogger(__name__)

GENERATION_NAME = re.compile(r"gen-(\d{6,})")  # a generation's folder: gen-000007
LOCK = "writer.lock"  # in the generations folder: one writer of a cluster tree at a time
_SMALL_BATCH = 32  # remove_links looks these up by name; bigger batches scan the generation


class ClusterTree:
    """The user-visible cluster folder: a symlink to the live generation of relative links."""

    def __init__(self, cluster_root: Path, photo_root: Path, dated_names: bool = False) -> None:
        """`dated_names`: link names start with the date the photo was taken.

        Raises StateError when the tree would lie inside the photo root (or the reverse)."""
        self.dated_names = dated_names
        self.cluster_root = Path(os.path.abspath(cluster_root))
        self.photo_root = Path(os.path.abspath(photo_root))
        self.generations = self.cluster_root.parent / f".{self.cluster_root.name}.generations"
        generations, photos = os.path.realpath(self.generations), os.path.realpath(photo_root)
        if os.path.commonpath([generations, photos]) in (generations, photos):
            raise StateError(
                f"the cluster tree {self.cluster_root} and the photo root {self.photo_root} "
                "must lie outside each other"
            )

    @property
    def lock_path(self) -> Path:
        """The lock file its one writer holds (`locking.hold`), beside the generations."""
        return self.generations / LOCK

    def live(self) -> Path | None:
        """The live generation, or None when there is none yet (or it was deleted).

        Raises StateError when cluster_root exists but is not photocluster's symlink.
        """
        try:
            target = os.readlink(self.cluster_root)
        except FileNotFoundError:
            return None
        except OSError as error:  # EINVAL: a real file or directory, not ours to replace
            raise StateError(
                f"{self.cluster_root} exists and is not a symlink; photocluster will not "
                "replace it: move it away or choose another paths.clusters"
            ) from error
        generation = self.generations / posixpath.basename(target)
        named = GENERATION_NAME.fullmatch(generation.name)
        if target != self._root_target(generation) or not named:
            raise StateError(f"{self.cluster_root} points to {target!r}, not to a generation")
        if not _is_real_dir(generation):
            logger.warning("the live cluster tree %s is missing; starting afresh", generation)
            return None
        return generation

    def read_plan(self) -> LinkPlan:
        """What the live generation holds; "_" entries, temp names and foreign files are skipped."""
        generation = self.live()
        if generation is None:
            return {}
        prefix = self._prefix(generation)
        return {
            cluster: dict(_links(generation / cluster, prefix))
            for cluster in _clusters(generation)
        }

    def link_prefix(self, generation: Path) -> str:
        """What each of our links in a folder of `generation` starts with (the photo root,
        relative to the folder)."""
        return self._prefix(generation)

    def folder_entries(self, generation: Path, folder: str) -> tuple[dict[str, str], list[str]]:
        """What one folder of `generation` holds: our links (link name -> photo path) and the
        names of everything else (temp names left out). FileNotFoundError when it is gone."""
        prefix = self._prefix(generation)
        links = dict(_links(generation / folder, prefix))
        with os.scandir(generation / folder) as entries:
            others = sorted(entry.name for entry in entries if entry.name not in links
                            and not entry.name.startswith(TEMP_PREFIX))
        return links, others

    def rename_folder(self, old: str, new: str) -> bool:
        """Rename the folder `old` of the live generation to `new` (and its contact sheet).
        False, renaming nothing, when there is no live `old` or something is called `new`."""
        check_cluster(new)
        generation = self.live()
        if generation is None or not _is_real_dir(generation / old):
            return False
        if os.path.lexists(generation / new):  # a rename would replace an empty folder
            return False
        os.rename(generation / old, generation / new)
        sheets = generation / OVERVIEW
        if os.path.lexists(sheets / f"{old}.jpg") and not os.path.lexists(sheets / f"{new}.jpg"):
            os.rename(sheets / f"{old}.jpg", sheets / f"{new}.jpg")
        return True

    def build(self, plan: LinkPlan, pulse: Pulse = no_pulse, carry_over: bool = True) -> Path:
        """Write `plan` as a new generation gen-<N+1> beside the live one and return its path.

        Built under a temp name and renamed when complete, so a crash leaves only a temp
        directory (removed by the next swap), never a generation that looks whole. `pulse` is
        called after each cluster; whatever it raises (Stopping) abandons the build, and the
        temp directory goes with it.

        A link whose folder and name the live generation holds with the same target is a hard
        link to the live symlink: no new inode, and the old generation's deletion frees few.
        Measured here (ext4 without a journal, 2 shared cores): 100k links, 5% moved, build +
        swap 2.7 s against 3.4 s with every link new (bench/scale.py); after a mass deletion,
        when ext4 makes each new inode cost 0.1-0.6 ms of kernel time, link + readlink stays
        at 15-30 us a link. Where hard links are refused (EPERM, EXDEV, a file system without
        them) every link is a new symlink. `carry_over=False` makes every link new even so: the
        daemon never passes it; bench/scale_parts.py measures with it what carrying over saves.
        """
        check_plan(plan)
        fsutil.private_dir(self.generations)
        final = self.generations / f"gen-{self._highest() + 1:06d}"
        temp = self.generations / f"{TEMP_PREFIX}{final.name}-{secrets.token_hex(4)}"
        source = self._reuse_source() if carry_over else None
        _private_mkdir(temp)
        try:
            reused = self._fill(temp, self._prefix(final), plan, source, pulse)
            os.rename(temp, final)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        fsutil.fsync_dir(self.generations)
        logger.info("built %s: %d clusters, %d links (%d carried over)", final.name, len(plan),
                    sum(len(links) for links in plan.values()), reused)
        return final

    def swap(self, generation: Path) -> None:
        """Atomically make `generation` live; keep the previous one, delete older ones and
        leftovers of crashed builds. Raises StateError when cluster_root is not ours."""
        if generation.parent != self.generations or not GENERATION_NAME.fullmatch(generation.name):
            raise ValueError(f"{generation} is not a generation of {self.cluster_root}")
        if not _is_real_dir(generation):
            raise StateError(f"generation {generation} does not exist")
        previous = self.live()
        if previous == generation:
            self._collect(keep=None)  # no swap: which one came before is unknown, keep them all
            return
        self._point_root_at(generation)
        self._collect(keep={generation.name} | ({previous.name} if previous else set()))
        logger.info("swapped %s to %s", self.cluster_root, generation.name)

    def link_name(self, photo: str, taken: Taken | None) -> str:
        """The name a link to `photo` prefers in this tree (`names.link_name`)."""
        return link_name(photo, taken, self.dated_names)

    def link_target(self, generation: Path, photo: str, depth: int = 1) -> str:
        """The relative target of a link to `photo` from a folder `depth` levels below
        `generation` (a cluster folder is 1, `_duplicates/<group>` is 2)."""
        check_photo(photo)
        return "../" * (depth - 1) + self._prefix(generation) + photo

    def add_link(self, cluster: str, photo: str, taken: Taken | None = None) -> str:
        """Link `photo` into `cluster` of the live generation (made if there is none) under its
        preferred name (`link_name`) or a tagged variant; return the link name. Any link to the
        photo in another cluster goes: a photo is linked once."""
        check_cluster(cluster)
        check_photo(photo)
        preferred = self.link_name(photo, taken)
        generation = self.live() or self._start()
        target = self._prefix(generation) + photo
        existing = self._find(generation, photo, target, preferred)
        name = next((name for home, name in existing if home == cluster), None)
        if name is None:
            name = _link(generation / cluster, photo, target, preferred)
        for home, other in existing:
            if (home, other) != (cluster, name):
                _unlink(generation / home / other)
        return name

    def remove_link(self, cluster: str, photo: str, taken: Taken | None = None) -> None:
        """Remove the link to `photo` from `cluster` of the live generation, if it is there:
        only the photo's candidate link names are looked at, so it costs the same at any size."""
        generation = self.live()
        if generation is None:
            return
        target = self._prefix(generation) + photo
        for name in candidate_names(photo, self.link_name(photo, taken)):
            if _readlink(generation / cluster / name) == target:
                _unlink(generation / cluster / name)

    def remove_links(self, photos: Iterable[str]) -> None:
        """Remove every link in the live generation that points at one of `photos`."""
        wanted = set(photos)
        generation = self.live()
        if not wanted or generation is None:
            return
        prefix = self._prefix(generation)
        if len(wanted) <= _SMALL_BATCH:  # a few names per cluster instead of reading every link
            doomed = [(home, name) for photo in wanted
                      for home, name in self._find(generation, photo, prefix + photo)]
        else:
            doomed = [(home, name) for home in _clusters(generation)
                      for name, photo in _links(generation / home, prefix) if photo in wanted]
        for home, name in doomed:
            _unlink(generation / home / name)
        logger.debug("removed %d links for %d photos", len(doomed), len(wanted))

    def remove_leftovers(self) -> None:
        """Delete what a crash left half done: temp links in the live generation's folders
        (a link created, not yet renamed), temp builds and temp root links beside it."""
        generation = self.live()
        if generation is None:
            return
        self._collect(keep=None)
        extras = [generation / name for name in (OVERVIEW, DUPLICATES, SIMILAR)]
        for folder in [*extras, *(generation / c for c in _clusters(generation))]:
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(folder):
                    if entry.name.startswith(TEMP_PREFIX):
                        _remove(Path(entry.path))

    def _prefix(self, generation: Path) -> str:
        """The relative link target of the photo root, seen from a cluster directory.

        Every cluster directory sits at the same depth, so one prefix serves a generation.
        Computed from real paths so ".." climbs the real tree; the photo root's own last
        component stays as given, so a symlinked photo folder (a mount) is followed at use.
        """
        cluster_dir = os.path.join(os.path.realpath(generation.parent), generation.name, "c")
        anchor = os.path.join(os.path.realpath(self.photo_root.parent), self.photo_root.name)
        return os.path.relpath(anchor, cluster_dir) + "/"

    def _root_target(self, generation: Path) -> str:
        return f"{self.generations.name}/{generation.name}"

    def _highest(self) -> int:
        numbers = [int(match.group(1)) for match in map(GENERATION_NAME.fullmatch,
                   os.listdir(self.generations)) if match]
        return max(numbers, default=0)

    def _reuse_source(self) -> Path | None:
        """The live generation, whose links a build may carry over; None when there is none
        or cluster_root is not ours (swap reports that)."""
        try:
            return self.live()
        except StateError:
            return None

    def _fill(
        self, temp: Path, prefix: str, plan: LinkPlan, source: Path | None, pulse: Pulse
    ) -> int:
        """Write the plan's links under temp; returns how many were carried over from source."""
        reused = 0
        for cluster, links in plan.items():
            _private_mkdir(temp / cluster)
            new = os.open(temp / cluster, os.O_RDONLY | os.O_DIRECTORY)
            try:
                with _open_dir(source / cluster if source is not None else None) as old:
                    carried = _fill_cluster(new, old, prefix, links)
            finally:
                os.close(new)
            if carried is None:  # hard links refused here: stop trying
                carried, source = 0, None
            reused += carried
            pulse()
        fsutil.fsync_dir(temp)
        return reused

    def _point_root_at(self, generation: Path) -> None:
        parent = self.cluster_root.parent
        temp = parent / f".{self.cluster_root.name}{TEMP_PREFIX}{secrets.token_hex(4)}"
        os.symlink(self._root_target(generation), temp)
        try:
            os.replace(temp, self.cluster_root)  # fails on a real directory: never replaced
        except BaseException:
            os.unlink(temp)
            raise
        fsutil.fsync_dir(parent)

    def _collect(self, keep: set[str] | None) -> None:
        """Delete generations not in `keep` (None: none) and leftovers of crashed operations."""
        for entry in os.scandir(self.generations):
            generation = GENERATION_NAME.fullmatch(entry.name)
            stale = keep is not None and generation is not None and entry.name not in keep
            if stale or entry.name.startswith(TEMP_PREFIX):
                _remove(Path(entry.path))
        root_temp = f".{self.cluster_root.name}{TEMP_PREFIX}"
        for entry in os.scandir(self.cluster_root.parent):
            if entry.name.startswith(root_temp) and entry.is_symlink():
                _unlink(Path(entry.path))

    def _start(self) -> Path:
        generation = self.build({})
        self.swap(generation)
        return generation

    def _find(
        self, generation: Path, photo: str, target: str, preferred: str | None = None
    ) -> list[tuple[str, str]]:
        """(cluster, name) of each link to `photo`: only its candidate names need looking at."""
        names = candidate_names(photo, preferred)
        return [(cluster, name) for cluster in _clusters(generation) for name in names
                if _readlink(generation / cluster / name) == target]


def _clusters(generation: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(generation)
                  if entry.name[0] not in "._" and entry.is_dir(follow_symlinks=False))


def _fill_cluster(new: int, old: int | None, prefix: str,
                  links: Mapping[str, str]) -> int | None:
    """Write one cluster's links into the directory `new` (an fd; dir_fd calls look up one
    name, not a path), carrying over those that the live generation's directory `old` holds.
    Returns how many were carried over, None when the file system refused a hard link (then
    every link is created)."""
    names = _symlink_names(old)
    refused = False
    carried = 0
    for name, photo in links.items():  # plain loops: a call per link is the cost here
        target = prefix + photo
        if name in names and old is not None:
            outcome = _carry_over(old, new, name, target)
            if outcome:
                carried += 1
                continue
            if outcome is None:
                refused, names = True, set()
        os.symlink(target, name, dir_fd=new)
    fsutil.fsync_descriptor(new)
    return None if refused else carried


@contextlib.contextmanager
def _open_dir(path: Path | None) -> Iterator[int | None]:
    """A descriptor of the real directory at `path` (not through a symlink at its last step),
    or None when there is none."""
    descriptor = None
    if path is not None:
        with contextlib.suppress(OSError):  # missing, not a directory, or a symlink
            descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        yield descriptor
    finally:
        if descriptor is not None:
            os.close(descriptor)


def _symlink_names(directory: int | None) -> set[str]:
    """Names of the symlinks in a cluster directory of the live generation (an fd)."""
    if directory is None:
        return set()
    with os.scandir(directory) as entries:
        return {entry.name for entry in entries
                if entry.is_symlink() and not entry.name.startswith(TEMP_PREFIX)}


def _carry_over(old: int, new: int, name: str, target: str) -> bool | None:
    """Hard-link the symlink `name` of directory `old` as `name` in `new` if it points at
    `target`.

    True: done. False: not usable, nothing left in `new`. None: this file system (or its
    policy) refuses hard links. The target is checked on the new name, in our private temp
    directory, so a link swapped by someone else meanwhile is never carried over.
    """
    try:
        os.link(name, name, src_dir_fd=old, dst_dir_fd=new, follow_symlinks=False)
    except FileNotFoundError:  # removed from the live tree meanwhile
        return False
    except (OSError, NotImplementedError) as error:  # EPERM, EXDEV, EMLINK, EOPNOTSUPP
        logger.debug("no hard links here (%s); creating every link", error)
        return None
    try:
        if os.readlink(name, dir_fd=new) == target:
            return True
    except OSError:  # EINVAL: not a symlink
        pass
    os.unlink(name, dir_fd=new)
    return False


def _links(cluster_dir: Path, prefix: str) -> Iterator[tuple[str, str]]:
    """(link name, photo path) of each of our links in a cluster directory."""
    for entry in os.scandir(cluster_dir):
        if entry.name.startswith(TEMP_PREFIX) or not entry.is_symlink():
            continue
        target = os.readlink(entry.path)
        if target.startswith(prefix) and _is_photo_path(target[len(prefix):]):
            yield entry.name, target[len(prefix):]


def _link(cluster_dir: Path, photo: str, target: str, preferred: str | None) -> str:
    """Create a link to `target` under the first free candidate name: temp name, then rename."""
    if not _is_real_dir(cluster_dir):
        _private_mkdir(cluster_dir)
    for name in candidate_names(photo, preferred):
        if not os.path.lexists(cluster_dir / name):
            temp = cluster_dir / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
            os.symlink(target, temp)
            os.rename(temp, cluster_dir / name)
            return name
    raise StateError(f"no free link name for {photo!r} in {cluster_dir}")


def _private_mkdir(path: Path) -> None:
    """Create the folder `path` 0700 (the umask can only take bits away from mkdir's mode, so
    the chmod makes it exact). Raises FileExistsError when it exists."""
    os.mkdir(path, fsutil.PRIVATE_DIR)
    os.chmod(path, fsutil.PRIVATE_DIR)


def _is_photo_path(photo: str) -> bool:
    try:
        check_photo(photo)
    except ValueError:
        return False
    return True


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:  # missing, or not a link
        return None


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):  # gone already (a file manager): fine
        os.unlink(path)


def _remove(path: Path) -> None:
    """Delete one entry of the generations folder without following any symlink.

    rmtree (fd-based on Linux) unlinks symlinks it meets and refuses a symlinked top,
    so the originals the links point at are never reached.
    """
    try:
        if _is_real_dir(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        logger.debug("removed %s", path)
    except OSError as error:  # the swap itself succeeded; an old tree left over is harmless
        logger.warning("could not remove %s: %s", path, error)

