"""The store: the SQLite catalog (the truth: files, contents, vectors, clusters; `catalog`,
`schema`) and the FAISS index of the live vectors (a rebuildable cache; `index`)."""

from photocluster.store.catalog import CATALOG, Store
from photocluster.store.groups import Shown
from photocluster.store.index import IDS, INDEX, STAMP
from photocluster.store.marks import Marks, PinMoves
from photocluster.store.rows import (
    ClusterMap,
    FileRecord,
    Members,
    NewCompanion,
    NewFile,
    Relink,
    StoredVector,
    Written,
)

__all__ = [
    "CATALOG",
    "IDS",
    "INDEX",
    "STAMP",
    "ClusterMap",
    "FileRecord",
    "Marks",
    "Members",
    "NewCompanion",
    "NewFile",
    "PinMoves",
    "Relink",
    "Shown",
    "Store",
    "StoredVector",
    "Written",
]
