"""Configuration: `config.toml` parsed once into frozen dataclasses.

Every problem is collected and reported at once, each with its dotted key, so a person fixes
the file in one pass. Every number has a closed range (`BOUNDS`, the one table README's is
checked against), so a value that passes `check-config` also runs. Relative paths are resolved
against the config file's folder. The resulting `Config` is passed down explicitly; there is no
global settings object.

Why one module of this length: each section's dataclass sits beside its parsing and `BOUNDS`,
the one table README's is checked against; split, a new setting would be written in three
places.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photocluster.errors import ConfigError
from photocluster.photos.exclude import DEFAULT_EXCLUDES, pattern_problem


@dataclass(frozen=True)
class PathsConfig:
    photos: Path = Path("photos")
    clusters: Path = Path("clusters")
    state: Path = Path(".photocluster")
    # Globs relative to `photos` that are never walked or watched (photos.exclude): `exclude`
    # replaces the defaults, `exclude_extra` adds to whichever list is in force.
    exclude: tuple[str, ...] = DEFAULT_EXCLUDES
    exclude_extra: tuple[str, ...] = ()

    @property
    def exclude_patterns(self) -> tuple[str, ...]:
        """`exclude` then `exclude_extra`, each pattern once: what `Excluder` takes."""
        return tuple(dict.fromkeys(self.exclude + self.exclude_extra))


@dataclass(frozen=True)
class PhotosConfig:
    max_megapixels: float = 100.0  # larger headers are refused as decompression bombs
    max_file_mb: float = 256.0


@dataclass(frozen=True)
class EmbeddingConfig:
    weights: str = "auto"  # "auto" or a path to a converted weights file
    preprocessing: str = "auto"  # "torch" | "caffe"; required when `weights` is a path
    precision: str = "auto"  # "auto" | "float32" | "bfloat16"
    batch_size: int = 16
    threads: int = 0  # 0: every core


@dataclass(frozen=True)
class ClusteringConfig:
    k_min: int = 2
    k_max: int = 24
    sample_size: int = 20000
    min_overlap: float = 0.3
    recluster_every_hours: float = 6.0
    regrow_ratio: float = 0.2  # recluster at once when the library grew this much since the last
    seed: int = 0
    keep_vectors_days: float = 7.0  # a deleted photo's vector is kept this long for its return


@dataclass(frozen=True)
class DuplicatesConfig:
    # cosine distance under which two photos are near-duplicates; 0: no groups (neardup.py)
    threshold: float = 0.09
    burst_seconds: float = 0.0  # links between photos taken further apart drop; 0: never


@dataclass(frozen=True)
class WatchConfig:
    mode: str = "auto"  # "auto" | "inotify" | "polling"
    settle_seconds: float = 2.0
    rescan_every_minutes: float = 60.0
    poll_interval_seconds: float = 10.0
    max_vanish_share: float = 0.25  # more of the library gone in one go waits for a confirmation


@dataclass(frozen=True)
class TreeConfig:
    dated_names: bool = True  # link names start with the date taken: folders sort by time


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"


@dataclass(frozen=True)
class Config:
    source: Path
    paths: PathsConfig = field(default_factory=PathsConfig)
    photos: PhotosConfig = field(default_factory=PhotosConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    duplicates: DuplicatesConfig = field(default_factory=DuplicatesConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    tree: TreeConfig = field(default_factory=TreeConfig)
    log: LogConfig = field(default_factory=LogConfig)


_SECTIONS: dict[str, type[Any]] = {
    "paths": PathsConfig,
    "photos": PhotosConfig,
    "embedding": EmbeddingConfig,
    "clustering": ClusteringConfig,
    "duplicates": DuplicatesConfig,
    "watch": WatchConfig,
    "tree": TreeConfig,
    "log": LogConfig,
}

WATCH_MODES = ("auto", "inotify", "polling")  # "auto": polling on network and FUSE mounts

_CHOICES: dict[str, tuple[str, ...]] = {
    "embedding.preprocessing": ("auto", "torch", "caffe"),
    "embedding.precision": ("auto", "float32", "bfloat16"),
    "watch.mode": WATCH_MODES,
    "log.level": ("DEBUG", "INFO", "WARNING", "ERROR"),
}


@dataclass(frozen=True)
class Bounds:
    """The closed range `low..high` a number must lie in; `off`, when set, is the one value
    outside it that is also allowed and switches the feature off (0 = never)."""

    low: float
    high: float
    why: str  # shown with the problem, so the person knows what the limit protects
    off: float | None = None

    def admits(self, value: float) -> bool:
        return value == self.off or self.low <= value <= self.high

    def describe(self) -> str:
        """`"1..64"`, or `"0 or 0.1..8760"` when there is an `off` value."""
        span = f"{_plain(self.low)}..{_plain(self.high)}"
        return span if self.off is None else f"{_plain(self.off)} or {span}"


# Every number in every section, by dotted key. README's configuration table shows these
# ranges and a test holds it to them. Memory figures are for the units' MemoryMax=3G.
BOUNDS: dict[str, Bounds] = {
    "photos.max_megapixels": Bounds(
        1, 1000, "a decoded 1000 MP photo is 3 GB of pixels, the service's memory limit"
    ),
    "photos.max_file_mb": Bounds(
        1, 1024, "a photo file is read into memory whole; the service has 3 GB"
    ),
    "embedding.batch_size": Bounds(
        1, 64, "VGG16 activations grow with the batch: 64 photos take about 0.8 GB, 512 take 6.5"
    ),
    "embedding.threads": Bounds(0, 256, "0 means every core; more threads than 256 only thrash"),
    "clustering.k_min": Bounds(2, 100, "one cluster is no grouping; at most clustering.k_max"),
    "clustering.k_max": Bounds(
        2, 100, "the elbow sweep fits k-means once for every k up to k_max: O(k_max^2) work"
    ),
    "clustering.sample_size": Bounds(
        100, 200_000, "fewer photos show no elbow; 200000 vectors are 400 MB, swept per k"
    ),
    "clustering.min_overlap": Bounds(0, 1, "a share of a cluster's members"),
    "clustering.recluster_every_hours": Bounds(
        0.1, 8760, "more often than every 6 minutes it never rests; 8760 h is a year", off=0
    ),
    "clustering.regrow_ratio": Bounds(
        0.01, 10, "under 1% a few new photos force a full recluster; 10 is ten times the library"
    ),
    "clustering.seed": Bounds(0, 2**32 - 1, "k-means' random generator takes a 32-bit seed"),
    "duplicates.threshold": Bounds(
        0.01, 0.3, "past 0.10 different photos of one subject join (BENCHMARKS.md)", off=0
    ),
    "duplicates.burst_seconds": Bounds(
        1, 31_536_000, "capture times are seconds; a year apart is no burst", off=0
    ),
    "clustering.keep_vectors_days": Bounds(
        0, 3650, "0 forgets a deleted photo's vector at the next rescan; 3650 days is 10 years"
    ),
    "watch.settle_seconds": Bounds(
        0.2, 3600, "the watcher wakes every settle/4 s: below 0.2 it busy-polls; 1 h is late"
    ),
    "watch.rescan_every_minutes": Bounds(
        1, 10080, "a full walk of the photo folder at most every minute; 10080 min is a week", off=0
    ),
    "watch.poll_interval_seconds": Bounds(
        0.2, 3600, "polling looks at every folder every interval: below 0.2 s it busy-polls"
    ),
    "watch.max_vanish_share": Bounds(
        0.01, 1, "a share of the library's files; 1 never waits (an emptied mount still does)"
    ),
}


MAX_CONFIG_BYTES = 1 << 20  # a configuration is a few hundred bytes; this is not one


def load_config(path: Path) -> Config:
    """Read and validate `path`.

    Returns a `Config` with absolute paths. Raises `ConfigError`, and nothing else, for every
    way the file can be bad: missing, unreadable, not a regular file, too large, not UTF-8,
    not TOML, or invalid values (listing every problem).
    """
    text = _read_text(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(path), [f"not valid TOML: {error}"]) from error
    except RecursionError as error:
        raise ConfigError(str(path), ["not valid TOML: nested too deeply"]) from error
    try:
        source = path.resolve()
    except (OSError, RuntimeError) as error:  # replaced by a symlink loop since it was read
        raise ConfigError(str(path), [f"cannot resolve the path: {error}"]) from error
    return parse_config(raw, source)


def _read_text(path: Path) -> str:
    # O_NONBLOCK: a FIFO named as the config must not hang the daemon; it is refused below.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise ConfigError(str(path), [f"cannot read the file: {error.strerror}"]) from error
    try:
        data = _read_regular(fd, path)
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(str(path), [f"larger than {MAX_CONFIG_BYTES} bytes: not a config file"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            str(path), [f"not UTF-8 text: byte {data[error.start]:#04x} at offset {error.start}"]
        ) from error


def _read_regular(fd: int, path: Path) -> bytes:
    """Up to MAX_CONFIG_BYTES + 1 bytes of the open file `fd`; ConfigError if it is not a file."""
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            with open(fd, "rb", closefd=False) as file:
                return file.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(str(path), [f"cannot read the file: {error.strerror}"]) from error
    kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
    raise ConfigError(str(path), [f"cannot read the file: {kind}"])


def parse_config(raw: dict[str, Any], source: Path) -> Config:
    """Turn parsed TOML into a `Config`; relative paths are taken from `source`'s folder."""
    problems: list[str] = []
    for unknown in sorted(set(raw) - set(_SECTIONS)):
        problems.append(f"{unknown}: unknown section")
    sections = {
        name: _parse_section(name, cls, raw.get(name, {}), problems)
        for name, cls in _SECTIONS.items()
    }
    sections["paths"] = _resolve_paths(sections["paths"], source.parent, problems)
    config = Config(source=source, **sections)
    problems.extend(_check_rules(config))
    if problems:
        raise ConfigError(str(source), problems)
    return config


def _parse_section(name: str, cls: type[Any], table: Any, problems: list[str]) -> Any:
    if not isinstance(table, dict):
        problems.append(f"{name}: must be a table")
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{name}.{key}"
        if key not in fields:
            problems.append(f"{dotted}: unknown key")
            continue
        default = fields[key].default
        converted = _convert(dotted, value, default, problems)
        if converted is not None:
            values[key] = converted
    return cls(**values)


def _convert(dotted: str, value: Any, default: Any, problems: list[str]) -> Any:
    """Coerce `value` to the type of `default`, or record why it cannot be."""
    if isinstance(default, Path):
        return _convert_path(dotted, value, problems)
    if isinstance(default, tuple):
        return _convert_strings(dotted, value, problems)
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(value, bool) and isinstance(default, bool):
            return value
        problems.append(f"{dotted}: must be {type(default).__name__}, got {value!r}")
    elif isinstance(default, int) and not isinstance(default, float):
        if isinstance(value, int):
            return value
        problems.append(f"{dotted}: must be an integer, got {value!r}")
    elif isinstance(default, float):
        number = _finite(value)
        if number is not None:
            return number
        problems.append(f"{dotted}: must be a finite number, got {value!r}")
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
        problems.append(f"{dotted}: must be a string, got {value!r}")
    return None


def _convert_path(dotted: str, value: Any, problems: list[str]) -> Path | None:
    if not isinstance(value, str) or not value or "\0" in value:
        problems.append(f"{dotted}: must be a non-empty path string without NUL characters")
        return None
    try:
        return Path(value).expanduser()
    except RuntimeError:  # "~name/..." for a user this machine does not know
        problems.append(f"{dotted}: cannot expand {value!r}: no such user's home")
        return None


def _convert_strings(dotted: str, value: Any, problems: list[str]) -> tuple[str, ...] | None:
    """A TOML array of non-empty strings without NUL as a tuple; each bad item is a problem."""
    if not isinstance(value, list):
        problems.append(f"{dotted}: must be a list of strings, got {value!r}")
        return None
    bad = [
        f"{dotted}[{index}]: must be a non-empty string without NUL characters, got {item!r}"
        for index, item in enumerate(value)
        if not isinstance(item, str) or not item or "\0" in item
    ]
    problems.extend(bad)
    return None if bad else tuple(value)


def _finite(value: Any) -> float | None:
    """`value` as a float when it is a finite number (TOML admits inf and nan), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float's range
        return None
    return number if math.isfinite(number) else None


def _resolve_paths(paths: PathsConfig, base: Path, problems: list[str]) -> PathsConfig:
    resolved: dict[str, Path] = {}
    for key in ("photos", "clusters", "state"):
        path = base / getattr(paths, key)
        try:
            # Resolve symlinks in the parents only: `clusters` itself is a symlink we own.
            resolved[key] = path.parent.resolve() / path.name
        except RuntimeError as error:  # a symlink loop
            problems.append(f"paths.{key}: cannot resolve {str(path)!r}: {error}")
            resolved[key] = path
    return dataclasses.replace(
        paths, photos=resolved["photos"], clusters=resolved["clusters"], state=resolved["state"]
    )


def _check_rules(config: Config) -> list[str]:
    problems = [
        f"{key}: must be one of {', '.join(choices)}, got {_lookup(config, key)!r}"
        for key, choices in _CHOICES.items()
        if _lookup(config, key) not in choices
    ]
    problems.extend(_check_paths(config.paths))
    problems.extend(_check_excludes(config.paths))
    problems.extend(_check_numbers(config))
    if config.embedding.weights != "auto" and config.embedding.preprocessing == "auto":
        problems.append(
            "embedding.preprocessing: must be 'torch' or 'caffe' when embedding.weights is a path"
        )
    return problems


def _check_paths(paths: PathsConfig) -> list[str]:
    """The daemon's output must never land inside the photo folder, nor the other way round."""
    problems = []
    for key in ("clusters", "state"):
        path = getattr(paths, key)
        if path == paths.photos or path.is_relative_to(paths.photos):
            problems.append(f"paths.{key}: must be outside paths.photos ({paths.photos})")
        elif paths.photos.is_relative_to(path):
            problems.append(f"paths.{key}: must not contain paths.photos ({paths.photos})")
    if paths.clusters == paths.state:
        problems.append("paths.clusters: must differ from paths.state")
    return problems


def _check_excludes(paths: PathsConfig) -> list[str]:
    return [
        f"paths.{key}[{index}]: {problem}, got {pattern!r}"
        for key in ("exclude", "exclude_extra")
        for index, pattern in enumerate(getattr(paths, key))
        if (problem := pattern_problem(pattern)) is not None
    ]


def _check_numbers(config: Config) -> list[str]:
    problems = [
        f"{key}: must be {bounds.describe()} ({bounds.why}), got {_lookup(config, key)!r}"
        for key, bounds in BOUNDS.items()
        if not bounds.admits(_lookup(config, key))
    ]
    k_min, k_max = config.clustering.k_min, config.clustering.k_max
    if k_max < k_min:
        problems.append(f"clustering.k_max: must be at least k_min ({k_min}), got {k_max}")
    return problems


def _lookup(config: Config, dotted: str) -> Any:
    section, key = dotted.split(".")
    return getattr(getattr(config, section), key)


def _plain(number: float) -> str:
    """1.0 -> "1", 0.1 -> "0.1": how README and the messages write a bound."""
    return str(int(number)) if float(number).is_integer() else repr(float(number))
