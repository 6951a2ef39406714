"""Names a user gives clusters: which ones can be a cluster's folder name (pure).

A cluster keeps its identity name (`cluster-007`) inside the catalog; the name a user gives it
(renaming its folder, or `photocluster name`) is its *label*, and its folder is called by it.
A label must be a folder name every later generation can use as it is: one file name, not
hidden, not one of the tree's own `_` folders, not an identity name, not another cluster's.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Mapping

from photocluster.tree.names import NAME_MAX

_IDENTITY = re.compile(r"cluster-\d+", re.IGNORECASE)  # the daemon's own names
# Characters a folder name must not hold: controls (a newline forges log and status lines),
# surrogates (bytes that are not UTF-8) and line/paragraph separators. Format characters stay
# allowed: emoji sequences need the zero-width joiner.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def check_label(label: str, identity: str, others: Mapping[str, str]) -> None:
    """Refuse `label` as the folder name of the cluster `identity`, saying why.

    `others`: identity -> folder name of every other active cluster. Renaming a cluster to its
    own identity name clears its label and is always allowed. Two clusters may not share a
    name, nor names that differ only in case: a Samba share or a macOS or Windows disk holding
    the tree cannot tell `Beach` from `beach`. Raises ValueError with a one-line reason.
    """
    if label == identity:
        return
    problem = _syntax_problem(label) or _clash(label, identity, others)
    if problem is not None:
        raise ValueError(f"cannot name {identity} {label!r}: {problem}")


def folder_names(active: Iterable[str], labels: Mapping[str, str]) -> dict[str, str]:
    """identity -> the name of its folder: its label, or its identity when it has none."""
    return {identity: labels.get(identity, identity) for identity in active}


def _syntax_problem(label: str) -> str | None:
    if not label.strip():
        return "a name needs a visible character"
    if "/" in label or "\0" in label:
        return "a folder name cannot hold '/' or NUL"
    if label in (".", ".."):
        return "'.' and '..' are not folder names"
    if label[0] in "._":
        return "names starting with '.' or '_' mark folders that are not clusters"
    if len(os.fsencode(label)) > NAME_MAX:
        return f"longer than {NAME_MAX} bytes, the most a file system allows in one name"
    if any(unicodedata.category(character) in _REFUSED_CATEGORIES for character in label):
        return "it holds a control character, a line break or bytes that are not UTF-8"
    if _IDENTITY.fullmatch(label):
        return "names like cluster-012 are the daemon's own"
    return None


def _clash(label: str, identity: str, others: Mapping[str, str]) -> str | None:
    wanted = label.casefold()
    for other, folder in sorted(others.items()):
        if other != identity and folder.casefold() == wanted:
            if folder == label:
                return f"{other} is called that already"
            return (f"{other} is called {folder!r}, the same but for case (some file systems "
                    "cannot tell the two apart)")
    return None
