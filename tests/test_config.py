from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from photocluster.config import BOUNDS, Bounds, Config, load_config
from photocluster.errors import ConfigError
from tests.support.config import BAD_KINDS, SAYS, bad_config, unprivileged

REPO = Path(__file__).resolve().parents[1]


def test_shipped_config_toml_is_valid_and_documents_every_default() -> None:
    config = load_config(REPO / "config.toml")
    assert config.paths.photos == REPO / "photos"
    assert config.paths.state == REPO / ".photocluster"
    assert config.embedding.weights == "auto"


def test_relative_paths_are_taken_from_the_config_files_folder(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "c.toml"
    path.write_text('[paths]\nphotos = "../pics"\nclusters = "out"\nstate = "st"\n')
    config = load_config(path)
    assert config.paths.photos == tmp_path / "pics"
    assert config.paths.clusters == tmp_path / "conf" / "out"


def test_every_problem_is_reported_at_once_with_its_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[paths]\nphotos = "p"\nclusters = "p/clusters"\nstate = "p/state"\n'
        '[embedding]\nbatch_size = "big"\nprecision = "fp8"\n'
        "[clustering]\nk_min = 5\nk_max = 3\ncolour = 1\n"
        '[watch]\nmode = "magic"\n[nonsense]\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = "\n".join(caught.value.problems)
    for key in (
        "paths.clusters",
        "paths.state",
        "embedding.batch_size",
        "embedding.precision",
        "clustering.k_max",
        "clustering.colour",
        "watch.mode",
        "nonsense",
    ):
        assert key in text, key
    assert len(caught.value.problems) == 8


def test_state_containing_the_photo_folder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[paths]\nphotos = "s/photos"\nclusters = "c"\nstate = "s"\n')
    with pytest.raises(ConfigError, match="paths.state"):
        load_config(path)


def test_a_weights_file_needs_its_preprocessing_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[embedding]\nweights = "/x.weights.h5"\n')
    with pytest.raises(ConfigError, match="embedding.preprocessing"):
        load_config(path)


def test_unreadable_or_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[paths\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return path


def defaults() -> dict[str, object]:
    """Every setting's default, by dotted key."""
    config = Config(source=Path("/c.toml"))
    return {
        f"{section.name}.{field.name}": getattr(getattr(config, section.name), field.name)
        for section in dataclasses.fields(config)
        if section.name != "source"
        for field in dataclasses.fields(getattr(config, section.name))
    }


def numeric_keys() -> dict[str, type]:
    """Every int or float setting, by dotted key, with its type."""
    return {key: type(value) for key, value in defaults().items() if type(value) in (int, float)}


def toml_value(key: str, value: float) -> str:
    return str(int(value)) if numeric_keys()[key] is int else repr(float(value))


def toml_of(values: dict[str, float]) -> str:
    sections: dict[str, list[str]] = {}
    for key, value in values.items():
        section, name = key.split(".")
        sections.setdefault(section, []).append(f"{name} = {toml_value(key, value)}")
    return "".join(
        f"[{section}]\n" + "\n".join(lines) + "\n" for section, lines in sections.items()
    )


def below(key: str, bounds: Bounds) -> float:
    """A value just under the range that is not the `off` value either."""
    if numeric_keys()[key] is int:
        return bounds.low - 1
    return bounds.low / 2 if bounds.low > 0 else bounds.low - 1


def above(key: str, bounds: Bounds) -> float:
    return bounds.high + 1 if numeric_keys()[key] is int else bounds.high * 2


def test_every_number_in_every_section_has_a_range() -> None:
    assert set(BOUNDS) == set(numeric_keys())


def test_the_documented_defaults_lie_within_their_ranges() -> None:
    values = defaults()
    assert [key for key, bounds in BOUNDS.items() if not bounds.admits(values[key])] == []


def test_both_ends_of_every_range_are_accepted(tmp_path: Path) -> None:
    load_config(write(tmp_path, toml_of({k: b.low for k, b in BOUNDS.items()})))
    load_config(write(tmp_path, toml_of({k: b.high for k, b in BOUNDS.items()})))


def test_zero_switches_off_the_scheduled_recluster_and_rescan(tmp_path: Path) -> None:
    path = write(
        tmp_path, "[clustering]\nrecluster_every_hours = 0\n[watch]\nrescan_every_minutes = 0\n"
    )
    config = load_config(path)
    assert config.clustering.recluster_every_hours == 0
    assert config.watch.rescan_every_minutes == 0


@pytest.mark.parametrize("side", [below, above])
def test_every_value_outside_its_range_is_refused_all_at_once(
    tmp_path: Path, side: Callable[[str, Bounds], float]
) -> None:
    values = {key: side(key, bounds) for key, bounds in BOUNDS.items()}
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, toml_of(values)))
    keys = [problem.split(":")[0] for problem in caught.value.problems]
    assert sorted(keys) == sorted(BOUNDS)
    assert all(
        BOUNDS[key].describe() in problem
        for key, problem in zip(keys, caught.value.problems, strict=True)
    )


def test_values_that_passed_but_broke_the_daemon_are_refused(tmp_path: Path) -> None:
    # Each once passed check-config: an OverflowError in the scheduler, a 20 ms polling tick,
    # an O(k_max^2) sweep, 6.5 GB of activations.
    path = write(
        tmp_path,
        "[photos]\nmax_megapixels = nan\nmax_file_mb = -inf\n"
        "[embedding]\nbatch_size = 512\n"
        "[clustering]\nk_max = 1000\nsample_size = 100000000\nrecluster_every_hours = 1e12\n"
        "min_overlap = nan\nregrow_ratio = 1" + "0" * 400 + "\n"
        "[watch]\nsettle_seconds = 0\nrescan_every_minutes = inf\npoll_interval_seconds = 0.01\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    keys = sorted(problem.split(":")[0] for problem in caught.value.problems)
    assert keys == [
        "clustering.k_max",
        "clustering.min_overlap",
        "clustering.recluster_every_hours",
        "clustering.regrow_ratio",
        "clustering.sample_size",
        "embedding.batch_size",
        "photos.max_file_mb",
        "photos.max_megapixels",
        "watch.poll_interval_seconds",
        "watch.rescan_every_minutes",
        "watch.settle_seconds",
    ]
    finite = [p for p in caught.value.problems if "finite" in p]
    assert len(finite) == 5  # nan, -inf, nan, an integer past float's range, inf


def readme_configuration_rows() -> dict[str, list[str]]:
    """README's configuration table: dotted key -> the row's cells."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            rows[cells[0].strip("`")] = cells
    return rows


def test_readme_configuration_table_has_every_key_with_its_range() -> None:
    rows = readme_configuration_rows()
    assert set(rows) == set(defaults())
    for key, bounds in BOUNDS.items():
        assert rows[key][2] == bounds.describe(), key


@pytest.mark.timeout(30)  # a FIFO must not block the read
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_every_kind_of_bad_file_is_a_config_error_naming_the_problem(
    tmp_path: Path, kind: str
) -> None:
    path = bad_config(tmp_path, kind)
    as_whom = unprivileged() if kind == "unreadable" else contextlib.nullcontext()
    with as_whom, pytest.raises(ConfigError) as caught:
        load_config(path)
    assert len(caught.value.problems) == 1
    assert SAYS[kind] in caught.value.problems[0]
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_mangled_config_file_raises_only_config_errors(tmp_path: Path) -> None:
    """What the daemon's SIGHUP reload relies on: any file gives a Config or a ConfigError."""
    shipped = (REPO / "config.toml").read_bytes()
    random = np.random.default_rng(0)
    path = tmp_path / "c.toml"
    outcomes = {"config": 0, "error": 0}
    for _ in range(400):
        data = bytearray(shipped)
        for position in random.integers(0, len(data), size=int(random.integers(1, 6))):
            data[position] = int(random.integers(0, 256))
        path.write_bytes(bytes(data))
        try:
            load_config(path)
            outcomes["config"] += 1
        except ConfigError:
            outcomes["error"] += 1
    assert min(outcomes.values()) > 0, outcomes  # both kinds of file were tried
