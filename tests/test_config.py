from __future__ import annotations

from pathlib import Path

import pytest

from photocluster.config import load_config
from photocluster.errors import ConfigError

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
