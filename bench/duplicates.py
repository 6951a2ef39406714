"""Near-duplicates, `similar` and the overview pages on the daemon's own paths, at 100 000
photos (issue 12).

A real catalog (`Store`) of 100 000 synthetic contents: 512-d unit vectors around 20 blob
centres (bench/scale.py's `blobs`), 5% of them planted copies of another, displaced as a
re-compressed or resized photo is (cosine distance about 0.03); EXIF taken times, pixel sizes,
clusters committed as a recluster would (each photo in its blob). No photo files (nothing timed
here reads one) but a 64-byte stand-in thumbnail per content, hard-linked by the pages as the
daemon's 320-px ones are. Timed on the code the daemon runs:

- the full pass as the recluster thread runs it (`duplicates.full_pass` on `recluster.snapshot`)
  and its commit (`Store.commit_duplicates`); reference: bench/neardup.py's numpy pass;
- a new photo after its catalog write: `duplicates.follow` (one index search, `neardup.join`,
  the catalog update, its group's folder rewritten in the live generation), alone and per
  photo of a batch of 16, and `placement.follow` before it; reference: a numpy product of the
  new vector with the library;
- `similar` for a library photo: `similar.find` in process (catalog opened read-only, its
  vectors scanned, the answer linked into `_similar/`), and the command as a new process;
  references: the numpy product, and a process that only imports the command line;
- the tree rebuild (`placement.rebuild_tree`) with and without the overview pages.

Scratch data in bench/out/duplicates-<pid>/, deleted at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import OUT, REPO, Section, machine, stopwatch, table, timed
from bench.neardup import reference_pass
from bench.synthetic import blobs
from photocluster import duplicates, neardup, pages, placement, recluster, similar
from photocluster.config import ClusteringConfig, DuplicatesConfig, load_config
from photocluster.records import ElbowCurve, ReclusterInfo, Taken
from photocluster.store import NewFile, Store
from photocluster.thumbs import Thumbnails
from photocluster.tree import ClusterTree

PHOTOS, CLUSTERS, PLANTED = 100_000, 20, 0.05
COPY_NOISE = 0.011  # per dimension: a planted copy lies ~0.03 (cosine) from its original
FINGERPRINT = "bench-duplicates"
ARRIVALS, BATCH, ROUNDS = 40, 16, 3
GOALS = {"full_pass_s": 60.0, "new_photo_s": 0.050, "similar_s": 1.0}
SETTINGS = DuplicatesConfig(threshold=neardup.SHIPPED_THRESHOLD)

Vectors = npt.NDArray[np.float32]
Row = list[object]


def run(quick: bool) -> Section:
    count = 20_000 if quick else PHOTOS
    scratch = OUT / f"duplicates-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        results = _measure(scratch, count)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _section(count, results, quick)


# ---- the library


def library_vectors(count: int) -> tuple[Vectors, npt.NDArray[np.int64]]:
    """(count, 512) unit rows and each one's blob; the first PLANTED share are copies of the
    rows after them (row i copies row planted + i)."""
    vectors, labels = blobs(count, CLUSTERS, seed=3)
    planted = int(count * PLANTED)
    rng = np.random.default_rng(5)
    vectors[:planted] = _copies(vectors[planted:2 * planted], rng)
    labels[:planted] = labels[planted:2 * planted]
    return vectors, labels


def _copies(originals: Vectors, rng: np.random.Generator) -> Vectors:
    shifted = originals + rng.normal(0, COPY_NOISE, originals.shape).astype(np.float32)
    return np.asarray(shifted / np.linalg.norm(shifted, axis=1, keepdims=True), np.float32)


def path_of(index: int) -> str:
    return f"{index // 1000:03d}/IMG_{index:06d}.jpg"


def new_file(index: int, vector: Vectors, smaller: bool) -> NewFile:
    taken = Taken(1_500_000_000.0 + index * 60.0, 0, "exif")
    size = (2016, 1512) if smaller else (4032, 3024)
    return NewFile(path_of(index), 1, 0, f"{index:032x}", vector, "photo", taken, size)


def fill(store: Store, vectors: Vectors, labels: npt.NDArray[np.int64]) -> float:
    """Store every photo (batches of 5 000, as a first scan would) and commit their clusters;
    returns the seconds the writes took."""
    planted = int(len(vectors) * PLANTED)
    with stopwatch() as took:
        for start in range(0, len(vectors), 5000):
            store.put_files([new_file(i, vectors[i], i < planted)
                             for i in range(start, min(start + 5000, len(vectors)))],
                            FINGERPRINT)
        members = store.members(FINGERPRINT)
        names = [f"cluster-{n + 1:03d}" for n in range(CLUSTERS)]
        centroids = {names[n]: _unit(vectors[labels == n].mean(axis=0))
                     for n in range(CLUSTERS)}
        home = dict(zip(members.ids.tolist(), labels.tolist(), strict=True))  # ids follow rows
        info = ReclusterInfo(time.time(), len(vectors), 0,
                             ElbowCurve((CLUSTERS,), (1.0,), CLUSTERS, True))
        store.commit_recluster(((i, v, names[home[i]]) for i, v in zip(
            members.ids.tolist(), members.versions.tolist(), strict=True)), centroids, info,
            members.changes)
    return took.wall


def _unit(vector: Vectors) -> Vectors:
    return np.asarray(vector / np.linalg.norm(vector), np.float32)


def stand_in_thumbnails(store: Store, thumbnails: Thumbnails) -> None:
    for record in store.files():
        if record.content_hash:
            path = thumbnails.path_for(record.content_hash)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(record.content_hash.encode() * 2)


# ---- the measurements


def _measure(scratch: Path, count: int) -> dict[str, Any]:
    vectors, labels = library_vectors(count)
    results: dict[str, Any] = {"photos": count}
    config = _config(scratch)
    with Store(config.paths.state, role="bench") as store:
        results["fill_s"] = fill(store, vectors, labels)
        results.update(full_pass(store, vectors))
        thumbnails = Thumbnails(config.paths.state / "thumbnails")
        stand_in_thumbnails(store, thumbnails)
        tree = ClusterTree(config.paths.clusters, config.paths.photos, dated_names=True)
        results.update(rebuilds(store, tree, thumbnails))
        results.update(arrivals(store, tree, vectors))
        store.save_index()
    results.update(similar_answers(config, count))
    return results


def _config(scratch: Path) -> Any:
    (scratch / "photos").mkdir(parents=True)
    path = scratch / "config.toml"
    path.write_text('[paths]\nphotos = "photos"\nclusters = "clusters"\nstate = "state"\n')
    return load_config(path)


def full_pass(store: Store, vectors: Vectors) -> dict[str, Any]:
    """The recluster thread's pass on a snapshot, paired each round with the reference; then
    the commit of its groups."""
    with stopwatch() as took:
        snap = recluster.snapshot(store, FINGERPRINT, ClusteringConfig(), SETTINGS)
        held = snap.vectors  # the recluster thread reads them through the snapshot's transaction
        read = held.take(np.arange(len(snap.ids))) if isinstance(
            held, recluster.CatalogVectors) else held  # (n, dim): up to FIT_LIMIT, all at once
        snap.close()
    snapshot_s = took.wall
    seconds, ratios, found = [], [], {}
    for _ in range(ROUNDS):
        reference = timed(lambda: reference_pass(vectors))
        with stopwatch() as took:
            found = duplicates.full_pass(snap.ids, read, snap.taken, SETTINGS)
        seconds.append(took.wall)
        ratios.append(seconds[-1] / reference)
    assert snap.versions is not None
    versions = dict(zip(snap.ids.tolist(), snap.versions.tolist(), strict=True))
    commit_s = timed(lambda: store.commit_duplicates(
        (content, versions[content], key) for content, key in found.items()))
    planted = int(len(vectors) * PLANTED)
    pairs = sum(1 for i in range(planted) if found.get(i + 1) is not None
                and found.get(i + 1) == found.get(planted + i + 1))  # ids are rows + 1
    distance = 1.0 - np.einsum("ij,ij->i", vectors[:planted], vectors[planted:2 * planted])
    return {"planted_close": int((distance < SETTINGS.threshold).sum()),
            "planted_distance": float(np.median(distance)),
            "snapshot_s": snapshot_s, "pass_s": statistics.median(seconds),
            "pass_ratio": statistics.median(ratios), "pass_rounds": seconds,
            "commit_s": commit_s, "grouped": len(found), "groups": len(set(found.values())),
            "planted_found": pairs, "planted": planted}


def rebuilds(store: Store, tree: ClusterTree, thumbnails: Thumbnails) -> dict[str, Any]:
    """The rebuild path, with and without the pages, alternating, ROUNDS each, with the pages'
    own step (`pages.write`, model and files) timed inside it; and the page model alone."""
    last = store.last_recluster()
    elbow = last.elbow if last else None
    times: dict[str, list[float]] = {"with": [], "without": [], "model": [], "pages": []}
    write = pages.write

    def timed_write(*args: Any) -> None:
        times["pages"].append(timed(partial(write, *args)))

    pages.write = timed_write  # type: ignore[assignment]  # as placement calls it
    try:
        for _ in range(ROUNDS):
            times["without"].append(timed(
                lambda: placement.rebuild_tree(store, tree, None, elbow)))
            times["with"].append(timed(lambda: placement.rebuild_tree(
                store, tree, None, elbow, thumbnail_file=thumbnails.path_for)))
            times["model"].append(timed(partial(pages.page_model, store, tree.read_plan())))
    finally:
        pages.write = write
    return {"rebuild_" + name: statistics.median(values) for name, values in times.items()} | {
        "rebuild_rounds": times}


def arrivals(store: Store, tree: ClusterTree, vectors: Vectors) -> dict[str, Any]:
    """New photos after the library: half copies of a library photo, half new pictures; each
    written, placed and joined as `library.apply_work` does, alone; then batches of 16."""
    rng = np.random.default_rng(9)
    base = len(vectors)
    picks = rng.choice(len(vectors), ARRIVALS + 3 * BATCH, replace=False)
    arriving = np.where((np.arange(len(picks)) % 2 == 0)[:, None],
                        _copies(vectors[picks], rng), blobs(len(picks), CLUSTERS, seed=11)[0])
    folders = duplicates.GroupFolders()
    write, place, join, reference = [], [], [], []
    for n in range(ARRIVALS):
        reference.append(timed(partial(np.matmul, vectors, arriving[n])))
        with stopwatch() as writing:
            written = store.put_files([new_file(base + n, arriving[n], False)], FINGERPRINT)
        with stopwatch() as placing:
            placed = placement.follow(written, store, tree)
        with stopwatch() as joining:
            duplicates.follow(written, placed, store, tree, SETTINGS, folders)
        write.append(writing.wall)
        place.append(placing.wall)
        join.append(joining.wall)
    batched = []
    for start in range(ARRIVALS, ARRIVALS + 3 * BATCH, BATCH):
        items = [new_file(base + n, arriving[n], False) for n in range(start, start + BATCH)]
        written = store.put_files(items, FINGERPRINT)
        placed = placement.follow(written, store, tree)
        batched.append(timed(partial(duplicates.follow, written, placed, store, tree,
                                      SETTINGS, folders)) / BATCH)
    shown = len(os.listdir(tree.cluster_root / "_duplicates"))
    return {"write_s": statistics.median(write), "place_s": statistics.median(place),
            "join_s": statistics.median(join), "join_batch_s": statistics.median(batched),
            "join_reference_s": statistics.median(reference),
            "join_ratio": statistics.median(j / r for j, r in zip(join, reference, strict=True)),
            "join_max_s": max(join), "folders_after": shown}


def similar_answers(config: Any, count: int) -> dict[str, Any]:
    """`similar` for a planted copy (its original must come first): in process, then as the
    command in a new process beside a process that only imports the command line."""
    photo = config.paths.photos / path_of(0)

    def no_model(_: object) -> Any:
        raise AssertionError("a library photo needs no model")

    with Store.open_readonly(config.paths.state) as store:
        _, library = store.vectors(FINGERPRINT)  # (n, 512): the reference's operand
    answers, walls, references = [], [], []
    for _ in range(5):
        references.append(timed(lambda: library @ library[0]))
        with stopwatch() as took:
            answers.append(similar.find(config, photo, 10, no_model))
        walls.append(took.wall)
    first = answers[-1].matches[0].path
    command = [sys.executable, "-c", "import sys; from photocluster.cli import main; "
               "sys.exit(main())", "-c", str(config.source), "similar", str(photo), "--json"]
    imports = [sys.executable, "-c", "import photocluster.cli"]
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'daemon'}:{REPO}"}
    processes, imported = [], []
    for _ in range(3):
        imported.append(timed(lambda: subprocess.run(imports, env=env, check=True)))
        with stopwatch() as took:
            out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        processes.append(took.wall)
        assert json.loads(out.stdout)["similar"][0]["relative"] == first
    return {"similar_s": statistics.median(walls),
            "similar_reference_s": statistics.median(references),
            "similar_ratio": statistics.median(w / r for w, r in zip(walls, references,
                                                                      strict=True)),
            "similar_first": first, "similar_expected": path_of(int(count * PLANTED)),
            "similar_process_s": statistics.median(processes),
            "similar_import_s": statistics.median(imported)}




# ---- the report


def _section(count: int, r: dict[str, Any], quick: bool) -> Section:
    ms = 1000.0
    rows: list[Row] = [
        ["full pass: `duplicates.full_pass` on the recluster snapshot",
         f"**{r['pass_s']:.1f} s**", f"{r['pass_ratio']:.1f}x", f"<= {GOALS['full_pass_s']:.0f} s",
         f"{r['groups']} groups of {r['grouped']} photos; {r['planted_found']} of "
         f"{r['planted']} planted copies with their original ({r['planted_close']} within "
         f"the threshold: median distance {r['planted_distance']:.3f})"],
        ["  the snapshot it runs on (members, vectors)", f"{r['snapshot_s']:.1f} s", "", "", ""],
        ["  committing the groups (`Store.commit_duplicates`)", f"{r['commit_s']:.1f} s", "", "",
         "one transaction"],
        ["new photo: `duplicates.follow` (search, join, catalog, folder)",
         f"**{r['join_s'] * ms:.1f} ms**", f"{r['join_ratio']:.1f}x",
         f"<= {GOALS['new_photo_s'] * ms:.0f} ms",
         f"median of {ARRIVALS}, half of them copies; slowest {r['join_max_s'] * ms:.1f} ms"],
        ["  per photo of a batch of 16", f"{r['join_batch_s'] * ms:.1f} ms", "", "", ""],
        ["  before it: catalog write / `placement.follow`",
         f"{r['write_s'] * ms:.1f} / {r['place_s'] * ms:.1f} ms", "", "", ""],
        ["`similar` for a library photo, in process (open, scan, answer, link)",
         f"**{r['similar_s']:.2f} s**", f"{r['similar_ratio']:.0f}x",
         f"<= {GOALS['similar_s']:.0f} s",
         "first match the planted copy's original: "
         f"{'yes' if r['similar_first'] == r['similar_expected'] else 'NO'}"],
        ["  `photocluster similar --json` as a new process", f"{r['similar_process_s']:.2f} s",
         "", "", f"a process that only imports the command line: {r['similar_import_s']:.2f} s"],
        ["the overview pages in the rebuild (`pages.write`: model, pages, thumbnail links)",
         f"**{r['rebuild_pages']:.1f} s**", f"{r['rebuild_pages'] / r['rebuild_without']:.2f}x",
         "", "timed inside `placement.rebuild_tree`"],
        ["  of which the page model from the catalog (`pages.page_model`)",
         f"{r['rebuild_model']:.1f} s", "", "", ""],
        ["  the whole rebuild with pages / without (links, `_duplicates/`, swap)",
         f"{r['rebuild_with']:.1f} / {r['rebuild_without']:.1f} s", "", "", ""],
    ]
    rounds = r["rebuild_rounds"]
    body = "\n\n".join([
        f"{count:,} photos in {CLUSTERS} clusters, {PLANTED:.0%} of them planted copies; "
        "threshold {0}. Ratios: to the reference measured just before, median of the rounds' "
        "ratios (full pass: bench/neardup.py's numpy pass; new photo and `similar`: one numpy "
        "product of a vector with the library, "
        f"{r['join_reference_s'] * ms:.1f} ms; pages: the rebuild without pages)."
        .format(neardup.SHIPPED_THRESHOLD),
        table(["measure", "time (median)", "ratio", "goal", "note"], rows),
        f"Full pass rounds, s: {', '.join(f'{s:.1f}' for s in r['pass_rounds'])}. Rebuild "
        f"rounds, s: with pages {', '.join(f'{s:.1f}' for s in rounds['with'])} (the pages "
        f"{', '.join(f'{s:.1f}' for s in rounds['pages'])}); without "
        f"{', '.join(f'{s:.1f}' for s in rounds['without'])}. Filling the catalog took "
        f"{r['fill_s']:.0f} s. {r['folders_after']} group folders in `_duplicates/` at the "
        f"end. Machine at the end: {machine()}.",
    ])
    figures: dict[str, float | str] = {
        "dups_full_pass_s": round(r["pass_s"], 2), "dups_new_photo_ms": round(r["join_s"] * ms, 1),
        "similar_s": round(r["similar_s"], 3),
        "page_build_s": round(r["rebuild_pages"], 2)}
    title = "Near-duplicates, similar and pages in the daemon (issue 12)"
    return Section(title, "python -m bench duplicates" + (" (quick)" if quick else ""), body,
                   figures)
