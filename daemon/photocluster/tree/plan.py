"""The link plan: which links a generation holds, as pure data (no file system).

A plan maps each cluster name to {link file name -> photo path relative to the photo root}.
Link names are the photo's file name; `describe_changes` turns two plans into the lines a
dry run prints.
"""

from __future__ import annotations

import posixpath
from collections.abc import Container, Iterable, Mapping

from photocluster.fsutil import TEMP_PREFIX
from photocluster.tree.names import candidate_names

LinkPlan = dict[str, dict[str, str]]  # cluster name -> {link file name -> photo relative path}

OVERVIEW = "_overview"


def plan_tree(
    members: Mapping[str, Iterable[str]], names: Mapping[str, str] | None = None
) -> LinkPlan:
    """Cluster name -> photo paths  =>  cluster name -> {link name -> photo path}.

    A link is named `names[photo]` (`names.link_name`: the file name, or it behind the date
    taken), by default the photo's file name. When photos in one cluster want one name, the one
    whose path sorts first keeps it and each other is named `<stem>~<sha1[:8]><suffix>` of its
    own path, so a name does not depend on the other members or their order.
    Raises ValueError for an invalid cluster name or photo path, or a photo in two clusters.
    """
    preferred = names or {}
    plan: LinkPlan = {}
    home: dict[str, str] = {}
    for cluster, photos in members.items():
        check_cluster(cluster)
        unique = sorted(set(photos))
        for photo in unique:
            check_photo(photo)
            if home.setdefault(photo, cluster) != cluster:
                raise ValueError(f"photo {photo!r} is in clusters {home[photo]!r} and {cluster!r}")
        plan[cluster] = _name_links(unique, preferred)
    return plan


def _name_links(photos: list[str], preferred: Mapping[str, str]) -> dict[str, str]:
    """Sorted photos -> {link name -> photo}; every plain name is claimed before any tagged one."""
    links: dict[str, str] = {}
    clashing = []
    for photo in photos:
        name = preferred.get(photo) or posixpath.basename(photo)
        if name in links:
            clashing.append(photo)
        else:
            links[name] = photo
    for photo in clashing:
        links[_free_name(photo, preferred.get(photo), links)] = photo
    return links


def _free_name(photo: str, preferred: str | None, taken: Container[str]) -> str:
    for name in candidate_names(photo, preferred)[1:]:
        if name not in taken:
            return name
    raise ValueError(f"no free link name for {photo!r}")


def check_cluster(name: str) -> None:
    # "_" names are not clusters (_overview), "." names are temp names or hidden
    if not name or "/" in name or "\0" in name or name[0] in "._":
        raise ValueError(f"invalid cluster name {name!r}")


def check_photo(photo: str) -> None:
    if "\0" in photo or any(part in ("", ".", "..") for part in photo.split("/")):
        raise ValueError(f"invalid photo path {photo!r}: must be relative to the photo root")


def check_plan(plan: LinkPlan) -> None:
    for cluster, links in plan.items():
        check_cluster(cluster)
        for name, photo in links.items():
            check_photo(photo)
            if name in ("", ".", "..") or "/" in name or name.startswith(TEMP_PREFIX):
                raise ValueError(f"invalid link name {name!r} in cluster {cluster!r}")


def describe_changes(old: LinkPlan, new: LinkPlan) -> list[str]:
    """Human lines for a dry run: one per added, removed or changed cluster, then a summary."""
    before = {cluster: set(links.values()) for cluster, links in old.items()}
    after = {cluster: set(links.values()) for cluster, links in new.items()}
    lines = []
    for cluster in sorted(before.keys() | after.keys()):
        if cluster not in before:
            lines.append(f"+ {cluster} ({len(after[cluster])} photos)")
        elif cluster not in after:
            lines.append(f"- {cluster} ({len(before[cluster])} photos)")
        elif before[cluster] != after[cluster]:
            added, removed = after[cluster] - before[cluster], before[cluster] - after[cluster]
            lines.append(f"~ {cluster}: +{len(added)} -{len(removed)} photos")
    lines.append(_summary(_homes(old), _homes(new), len(new)))
    return lines


def _homes(plan: LinkPlan) -> dict[str, str]:
    return {photo: cluster for cluster, links in plan.items() for photo in links.values()}


def _summary(old: dict[str, str], new: dict[str, str], clusters: int) -> str:
    moved = sum(1 for photo, cluster in new.items() if old.get(photo, cluster) != cluster)
    added, gone = len(new.keys() - old.keys()), len(old.keys() - new.keys())
    return (
        f"{moved} photos change folder, {added} new, {gone} no longer linked; "
        f"{len(new)} photos in {clusters} clusters"
    )

