"""`photocluster name`, `pin` and `unpin`: the corrections a user can make in a file manager,
given on the command line instead.

Each verb leaves the tree as the same gesture would: `name` renames the cluster's folder in the
live tree first and then records the label (a crash in between leaves a renamed folder, which
the next start reads as the same correction); `pin` records the pin and moves the photo's link;
`unpin` only records (the photo stays in its folder until the next regrouping places it).

They run on the catalog's one writer: the daemon's worker answering the command line's
requests (`serve`, through `mailbox`), or the command itself when no daemon runs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from photocluster import mailbox
from photocluster.corrections import TreeReader
from photocluster.errors import StateError, UsageError
from photocluster.store import Marks
from photocluster.tree.labels import check_label

logger = logging.getLogger(__name__)


def name(reader: TreeReader, cluster: str, label: str) -> str:
    """Name the cluster `cluster` (its identity or its folder's name) `label`; its own identity
    name clears the label. Returns what was done. Raises UsageError for an unknown cluster or a
    name that cannot be its folder's."""
    folders = reader.store.folder_names()
    identity = cluster_identity(cluster, folders)
    try:
        check_label(label, identity, folders)
    except ValueError as refused:
        raise UsageError(str(refused)) from None
    if folders[identity] == label:
        return f"{identity} is called {label!r} already"
    generation = reader.tree.live()
    if generation is not None and os.path.lexists(generation / label):
        raise UsageError(f"cannot name {identity} {label!r}: the cluster tree holds something "
                         "of that name that is not a cluster's folder")
    reader.tree.rename_folder(folders[identity], label)
    reader.store.correct(Marks(labels={identity: None if label == identity else label}))
    logger.info("cluster %s is now called %r (photocluster name)", identity, label)
    return f"{identity} is now called {label!r}"


def pin(reader: TreeReader, photo: str, cluster: str) -> str:
    """Pin the photo at `photo` (relative to the photo root) to `cluster` and move its link.
    Raises UsageError for an unknown photo or cluster."""
    folders = reader.store.folder_names()
    identity = cluster_identity(cluster, folders)
    content = _content(reader, photo)
    reader.store.correct(Marks(pins={content: identity}))
    for path, taken in reader.store.link_rows([content]).values():
        reader.tree.add_link(folders[identity], path, taken)
        for companion in reader.store.companions_of(path):
            reader.tree.add_link(folders[identity], companion, taken)
    logger.info("%r pinned to %s (photocluster pin)", photo, identity)
    return f"{photo!r} is pinned to {folders[identity]!r}"


def unpin(reader: TreeReader, photo: str) -> str:
    """Drop the photo's pin; it stays where it is until the next regrouping. Raises UsageError
    for an unknown photo."""
    content = _content(reader, photo)
    if content not in reader.store.pins():
        return f"{photo!r} was not pinned"
    reader.store.correct(Marks(unpins={content}))
    logger.info("%r unpinned (photocluster unpin)", photo)
    return f"{photo!r} is no longer pinned; the next regrouping places it"


def cluster_identity(cluster: str, folders: dict[str, str]) -> str:
    """The identity of the active cluster called `cluster` (its identity, or its folder's name;
    a path to the folder is taken by its last part). Raises UsageError when there is none."""
    wanted = os.path.basename(cluster.rstrip("/")) or cluster
    if wanted in folders:
        return wanted
    for identity, folder in folders.items():
        if folder == wanted:
            return identity
    raise UsageError(f"no cluster is called {cluster!r} (`photocluster status` lists them)")


def photo_path(argument: str, photo_root: Path) -> str:
    """A photo as given on the command line -> its path relative to the photo root: a path
    relative to the root, an absolute path inside it, or a link in the cluster tree. Raises
    UsageError for a path outside the photo root."""
    if os.path.islink(argument):
        target = os.readlink(argument)
        argument = os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(argument))),
                                target)
    if not os.path.isabs(argument):
        relative = os.path.normpath(argument)
    else:
        relative = _inside(os.path.normpath(argument), photo_root)
    if relative in (".", "") or relative.startswith("../") or relative == "..":
        raise UsageError(f"{argument!r} is not a photo inside the photo folder {photo_root}")
    return relative


def _inside(path: str, photo_root: Path) -> str:
    roots = {os.path.abspath(photo_root), os.path.realpath(photo_root),
             os.path.join(os.path.realpath(photo_root.parent), photo_root.name)}
    for root in sorted(roots):
        if path.startswith(root.rstrip("/") + "/"):
            return path[len(root.rstrip("/")) + 1:]
    raise UsageError(f"{path!r} is not inside the photo folder {photo_root}")


def _content(reader: TreeReader, photo: str) -> int:
    record = reader.store.file(photo)
    if record is None or record.content is None or record.error is not None:
        raise UsageError(f"{photo!r} is not a photo the catalog knows (`photocluster status` "
                         "lists the ones that failed)")
    return record.content


# ---- the daemon's side of the command line


def serve(reader: TreeReader, state_dir: Path) -> None:
    """Carry out the requests the command line left (`mailbox`), oldest first, and answer each.
    A failed write is answered, then raised for the worker to record and retry."""
    for request_id, request in mailbox.take(state_dir):
        try:
            reply = mailbox.Reply(True, _carry_out(reader, request))
        except UsageError as refused:
            reply = mailbox.Reply(False, str(refused), usage=True)
        except (StateError, OSError) as failed:
            mailbox.answer(state_dir, request_id, mailbox.Reply(False, str(failed)))
            raise
        mailbox.answer(state_dir, request_id, reply)


def _carry_out(reader: TreeReader, request: dict[str, Any] | None) -> str:
    verb = None if request is None else request.get("verb")
    arguments = [] if request is None else request.get("arguments", [])
    if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
        raise UsageError("a request's arguments must be strings")
    if verb == "name" and len(arguments) == 2:
        return name(reader, *arguments)
    if verb == "pin" and len(arguments) == 2:
        return pin(reader, *arguments)
    if verb == "unpin" and len(arguments) == 1:
        return unpin(reader, *arguments)
    raise UsageError(f"not a request this daemon understands: {request!r}")
