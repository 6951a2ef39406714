"""Configuration: `config.toml` parsed once into frozen dataclasses.

Every problem is collected and reported at once, each with its dotted key, so a person fixes
the file in one pass. Relative paths are resolved against the config file's folder. The
resulting `Config` is passed down explicitly; there is no global settings object.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photocluster.errors import ConfigError


@dataclass(frozen=True)
class PathsConfig:
    photos: Path = Path("photos")
    clusters: Path = Path("clusters")
    state: Path = Path(".photocluster")


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


@dataclass(frozen=True)
class WatchConfig:
    mode: str = "auto"  # "auto" | "inotify" | "polling"
    settle_seconds: float = 2.0
    rescan_every_minutes: float = 60.0
    poll_interval_seconds: float = 10.0


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
    watch: WatchConfig = field(default_factory=WatchConfig)
    log: LogConfig = field(default_factory=LogConfig)


_SECTIONS: dict[str, type[Any]] = {
    "paths": PathsConfig,
    "photos": PhotosConfig,
    "embedding": EmbeddingConfig,
    "clustering": ClusteringConfig,
    "watch": WatchConfig,
    "log": LogConfig,
}

WATCH_MODES = ("auto", "inotify", "polling")  # "auto": polling on network and FUSE mounts

_CHOICES: dict[str, tuple[str, ...]] = {
    "embedding.preprocessing": ("auto", "torch", "caffe"),
    "embedding.precision": ("auto", "float32", "bfloat16"),
    "watch.mode": WATCH_MODES,
    "log.level": ("DEBUG", "INFO", "WARNING", "ERROR"),
}


def load_config(path: Path) -> Config:
    """Read and validate `path`.

    Returns a `Config` with absolute paths. Raises `ConfigError` listing every problem.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(str(path), [f"cannot read the file: {error.strerror}"]) from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(path), [f"not valid TOML: {error}"]) from error
    return parse_config(raw, path.resolve())


def parse_config(raw: dict[str, Any], source: Path) -> Config:
    """Turn parsed TOML into a `Config`; relative paths are taken from `source`'s folder."""
    problems: list[str] = []
    for unknown in sorted(set(raw) - set(_SECTIONS)):
        problems.append(f"{unknown}: unknown section")
    sections = {
        name: _parse_section(name, cls, raw.get(name, {}), problems)
        for name, cls in _SECTIONS.items()
    }
    sections["paths"] = _resolve_paths(sections["paths"], source.parent)
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
        if isinstance(value, str) and value:
            return Path(value).expanduser()
        problems.append(f"{dotted}: must be a non-empty path string")
    elif isinstance(default, bool) or isinstance(value, bool):
        if isinstance(value, bool) and isinstance(default, bool):
            return value
        problems.append(f"{dotted}: must be {type(default).__name__}, got {value!r}")
    elif isinstance(default, int) and not isinstance(default, float):
        if isinstance(value, int):
            return value
        problems.append(f"{dotted}: must be an integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, int | float):
            return float(value)
        problems.append(f"{dotted}: must be a number, got {value!r}")
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
        problems.append(f"{dotted}: must be a string, got {value!r}")
    return None


def _resolve_paths(paths: PathsConfig, base: Path) -> PathsConfig:
    def absolute(path: Path) -> Path:
        return Path(_normalise(base / path))

    return PathsConfig(
        photos=absolute(paths.photos),
        clusters=absolute(paths.clusters),
        state=absolute(paths.state),
    )


def _normalise(path: Path) -> str:
    # Resolve symlinks in the parents only: `clusters` itself is a symlink we own.
    return str(path.parent.resolve() / path.name)


def _check_rules(config: Config) -> list[str]:
    problems = [
        f"{key}: must be one of {', '.join(choices)}, got {_lookup(config, key)!r}"
        for key, choices in _CHOICES.items()
        if _lookup(config, key) not in choices
    ]
    problems.extend(_check_paths(config.paths))
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


def _check_numbers(config: Config) -> list[str]:
    rules: list[tuple[str, bool]] = [
        ("photos.max_megapixels", config.photos.max_megapixels > 0),
        ("photos.max_file_mb", config.photos.max_file_mb > 0),
        ("embedding.batch_size", 1 <= config.embedding.batch_size <= 512),
        ("embedding.threads", config.embedding.threads >= 0),
        ("clustering.k_min", config.clustering.k_min >= 2),
        ("clustering.k_max", config.clustering.k_max >= config.clustering.k_min),
        ("clustering.sample_size", config.clustering.sample_size >= 100),
        ("clustering.min_overlap", 0.0 <= config.clustering.min_overlap <= 1.0),
        ("clustering.recluster_every_hours", config.clustering.recluster_every_hours >= 0),
        ("clustering.regrow_ratio", config.clustering.regrow_ratio > 0),
        ("watch.settle_seconds", config.watch.settle_seconds >= 0),
        ("watch.rescan_every_minutes", config.watch.rescan_every_minutes >= 0),
        ("watch.poll_interval_seconds", config.watch.poll_interval_seconds > 0),
    ]
    return [
        f"{key}: out of range, got {_lookup(config, key)!r}" for key, valid in rules if not valid
    ]


def _lookup(config: Config, dotted: str) -> Any:
    section, key = dotted.split(".")
    return getattr(getattr(config, section), key)
