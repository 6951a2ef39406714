"""Recording the user's edits of the cluster tree (`tree.edits.Edits`): labels, pins,
rejections and retired clusters go into the catalog in one transaction, then the live tree is
made to follow (a folder renamed under a refused name goes back, a pinned photo's other links
go, a photo taken out of a cluster is placed anew)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping

from photocluster import placement
from photocluster.steering import Fate
from photocluster.store import Marks, Store
from photocluster.tree import ClusterTree
from photocluster.tree.edits import Edits
from photocluster.tree.labels import check_label

logger = logging.getLogger(__name__)


def record(store: Store, tree: ClusterTree, edits: Edits, exact: bool,
           folders: Mapping[str, str], fates: Mapping[str, Fate] | None = None) -> None:
    """Record `edits`: all of them when `exact`, else only renamed folders (the tree may lag
    the catalog). `folders`: identity -> folder name the edits were read against; `fates`: the
    clusters a recluster retired since, for pins made to them meanwhile."""
    marks = Marks(labels=_labels(tree, edits.renames, folders))
    replace: set[int] = set()
    if exact:
        replace = _mark_moves(store, edits, marks, fates or {})
    if not marks:
        return
    store.correct(marks)
    _log(store, marks)
    _follow(store, tree, marks, folders, replace)


def _labels(tree: ClusterTree, renames: Mapping[str, str], folders: Mapping[str, str]
            ) -> dict[str, str | None]:
    """The renames that make good names, as labels (None: back to the identity); a folder
    given a name that cannot be a cluster's is renamed back."""
    current = dict(folders)
    labels: dict[str, str | None] = {}
    for identity, name in sorted(renames.items()):
        try:
            check_label(name, identity, current)
        except ValueError as refused:
            back = current.get(identity, identity)
            renamed = tree.rename_folder(name, back)
            logger.warning("%s; %s", refused, f"renamed the folder back to {back!r}" if renamed
                           else f"the folder {name!r} is left as it is")
            continue
        labels[identity] = None if name == identity else name
        current[identity] = name
    return labels


def _mark_moves(store: Store, edits: Edits, marks: Marks, fates: Mapping[str, Fate]) -> set[int]:
    """Pins, rejections and retired clusters into `marks`; returns the contents to place anew
    once they are recorded."""
    active = set(store.folder_names())
    homes = store.homes([*edits.pins, *edits.removals])
    for photo, identity in edits.pins.items():
        target = _follow_retired(identity, active, fates)
        if photo in homes and target is not None:
            marks.pins[homes[photo][0]] = target
    for photo, identity in edits.removals.items():
        if photo in homes and identity in active:
            marks.rejections[homes[photo][0]] = identity
    vanished = edits.vanished & active
    if vanished and vanished == active:
        logger.warning("every cluster folder is gone from the tree; it is rebuilt at the next "
                       "regrouping or start, and no cluster is retired")
        vanished = set()
    marks.retired = vanished
    moved_out = {content for identity in vanished
                 for content in store.members_of(identity).values()}
    return set(marks.rejections) | (moved_out - set(marks.pins))


def _follow_retired(identity: str, active: set[str], fates: Mapping[str, Fate]) -> str | None:
    """A pin to a cluster retired meanwhile goes to its heir; None when there is none."""
    if identity in active:
        return identity
    fate = fates.get(identity)
    return fate.into if fate is not None and fate.into in active else None


def _log(store: Store, marks: Marks) -> None:
    for identity, label in sorted(marks.labels.items()):
        logger.info("cluster %s is now called %r", identity, label or identity)
    for identity in sorted(marks.retired):
        logger.info("the folder of %s was deleted: the cluster is retired and its photos go "
                    "to their nearest other clusters", identity)
    paths = {content: row[0] for content, row in
             store.link_rows([*marks.pins, *marks.rejections]).items()}
    for content, identity in marks.pins.items():
        logger.info("%r pinned to %s (its link was moved there)", paths.get(content), identity)
    for content, identity in marks.rejections.items():
        logger.info("%r is not %s (its link was deleted): placed by its next-nearest cluster",
                    paths.get(content), identity)


def _follow(store: Store, tree: ClusterTree, marks: Marks, folders: Mapping[str, str],
            replace: set[int]) -> None:
    """Bring the live tree in line with what was just recorded."""
    now = store.folder_names()
    for identity in marks.labels:
        if identity in now:
            _move_folder(tree, folders.get(identity, identity), now[identity])
    for content, (path, taken) in store.link_rows(marks.pins).items():
        folder = now[marks.pins[content]]
        tree.add_link(folder, path, taken)
        for companion in store.companions_of(path):
            tree.add_link(folder, companion, taken)
    placement.place(store.stored_vectors(sorted(replace)), store, tree)
    for identity in marks.retired:
        _remove_if_empty(tree, folders.get(identity, identity))


def _move_folder(tree: ClusterTree, old: str, new: str) -> None:
    """The live tree's folder `old` becomes `new`: renamed when `new` is not there yet (a
    rename read from an old generation), merged into it when both are (a photo was linked
    under the old name before the rename was noticed)."""
    generation = tree.live()
    if old == new or generation is None or not (generation / old).is_dir():
        return
    if tree.rename_folder(old, new):
        return
    for name in os.listdir(generation / old):
        if not os.path.lexists(generation / new / name):
            os.rename(generation / old / name, generation / new / name)
    _remove_if_empty(tree, old)


def _remove_if_empty(tree: ClusterTree, folder: str) -> None:
    generation = tree.live()
    if generation is not None:
        with contextlib.suppress(OSError):  # not empty, or gone: leave it
            os.rmdir(generation / folder)
