"""The one config resolver: defaults < preset < base < file < --set, sections, named errors."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from fastdat import config
from fastdat.config import load_preset, resolve, to_dict
from fastdat.simulate.cohort import SimulationConfig
from fastdat.training.config import TrainConfig


@dataclass(frozen=True)
class Inner:
    """A nested section."""

    depth: int = 2
    name: str = "a"


@dataclass(frozen=True)
class Small:
    """A small frozen config with a nested section."""

    lr: float = 0.1
    epochs: int = 3
    tag: str = "default"
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"small.epochs must be >= 1, got {self.epochs}")


@pytest.fixture
def small_preset(monkeypatch):
    """``load_preset("small", "p")`` -> a partial Small config (via the resolver's lookup)."""
    presets = {("small", "p"): {"lr": 0.2, "epochs": 4, "tag": "preset", "inner": {"depth": 5}}}

    def fake(stage, name):
        if (stage, name) in presets:
            return presets[(stage, name)]
        return load_preset(stage, name)

    monkeypatch.setattr(config, "load_preset", fake)


def _write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_no_inputs_give_the_defaults():
    assert resolve(Small) == Small()
    assert resolve(TrainConfig) == TrainConfig()


def test_layer_order_on_a_small_dataclass(tmp_path, small_preset):
    assert resolve(Small, preset=("small", "p")) == Small(0.2, 4, "preset", inner=Inner(5))
    # base over preset; nested sections merge key by key
    cfg = resolve(Small, preset=("small", "p"), base={"epochs": 6, "inner": {"name": "b"}})
    assert cfg == Small(0.2, 6, "preset", inner=Inner(5, "b"))
    # file over base
    path = _write(tmp_path, "epochs: 7\ntag: file\nsizes: [3, 4]\n")
    cfg = resolve(Small, preset=("small", "p"), base={"epochs": 6}, file=path)
    assert cfg == Small(0.2, 7, "file", (3, 4), Inner(5))
    # --set over everything
    cfg = resolve(
        Small, preset=("small", "p"), base={"epochs": 6}, file=path, sets=["tag=set", "lr=1e-3"]
    )
    assert cfg == Small(1e-3, 7, "set", (3, 4), Inner(5))
    assert isinstance(cfg.lr, float) and isinstance(cfg.sizes, tuple)


def test_layer_order_on_train_config(tmp_path):
    path = _write(tmp_path, "lr: 5.0e-4\nmax_epochs: 20\nmodel: unet2\n")
    cfg = resolve(
        TrainConfig,
        base={"lr": 1e-2, "batch_size": 8, "max_epochs": 50},
        file=path,
        sets=["max_epochs=3"],
    )
    assert (cfg.lr, cfg.batch_size, cfg.max_epochs, cfg.model) == (5e-4, 8, 3, "unet2")
    assert cfg.patience == TrainConfig().patience  # untouched: the default
    # a packaged preset is the lowest layer after the defaults
    sim = resolve(SimulationConfig, preset=("simulate", "quick"), sets=["cohort.seed=9"])
    quick = load_preset("simulate", "quick")
    assert sim.cohort.seed == 9
    for key, value in quick.get("grid", {}).items():
        assert to_dict(sim)["grid"][key] == value


def test_section_selection(tmp_path):
    study = _write(
        tmp_path,
        "dataset: {crop: 32}\ntrain: {lr: 2.0e-4, max_epochs: 4}\n"
        "finetune: {ft: {lr: 1.0e-5, init: default}}\n",
        "study.yaml",
    )
    cfg = resolve(TrainConfig, file=study, section="train")
    assert (cfg.lr, cfg.max_epochs) == (2e-4, 4)
    ft = resolve(TrainConfig, file=study, section="finetune.ft")
    assert (ft.lr, ft.init) == (1e-5, "default")
    # a file without the section is used whole (a plain train.yaml)
    flat = _write(tmp_path, "lr: 3.0e-4\n", "train.yaml")
    assert resolve(TrainConfig, file=flat, section="train").lr == 3e-4
    # an empty file is an empty layer
    assert resolve(TrainConfig, file=_write(tmp_path, "", "empty.yaml")) == TrainConfig()


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    path = _write(tmp_path, "train:\n  max_epoch: 3\n")
    with pytest.raises(ValueError, match="unknown config key 'train.max_epoch'") as err:
        resolve(TrainConfig, file=path, section="train")
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match="unknown config key 'inner.dept'") as err:
        resolve(Small, file=_write(tmp_path, "inner: {dept: 1}\n", "n.yaml"))
    assert "n.yaml" in str(err.value)
    # from --set: the key, without a file
    with pytest.raises(ValueError, match="unknown config key 'max_epoch'"):
        resolve(TrainConfig, sets=["max_epoch=3"])
    with pytest.raises(ValueError, match="unknown config key 'inner.x'"):
        resolve(Small, base={"inner": {"x": 1}})


def test_invalid_values_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="config key 'train.lr' must be float") as err:
        resolve(TrainConfig, file=_write(tmp_path, "lr: fast\n"), section="train")
    assert "cfg.yaml" in str(err.value)
    with pytest.raises(ValueError, match="config key 'epochs' must be int"):
        resolve(Small, sets=["epochs=many"])
    with pytest.raises(ValueError, match="small.epochs must be >= 1"):
        resolve(Small, sets=["epochs=0"])
    # a value the file sets that the dataclass rejects: the file is named too
    with pytest.raises(ValueError, match="small.epochs must be >= 1.*bad.yaml"):
        resolve(Small, file=_write(tmp_path, "epochs: 0\n", "bad.yaml"))
    with pytest.raises(ValueError, match="--set expects key=value"):
        resolve(Small, sets=["epochs"])
    with pytest.raises(ValueError, match="unknown simulate preset 'nope'"):
        resolve(Small, preset=("simulate", "nope"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("lr: [1, 2\n", "not valid YAML"),
        ("- 1\n- 2\n", "must be a mapping of settings, got list"),
        ("just a string\n", "must be a mapping of settings, got str"),
        ("train: [1, 2]\n", "section 'train' must be a mapping"),
    ],
)
def test_bad_files_are_named(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as err:
        resolve(TrainConfig, file=path, section="train")
    assert str(path) in str(err.value)


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ValueError, match="nowhere.yaml") as err:
        resolve(TrainConfig, file=path)
    assert str(path) in str(err.value)


def test_layers_are_not_modified(tmp_path, small_preset):
    base = {"inner": {"depth": 9}}
    resolve(Small, preset=("small", "p"), base=base, sets=["inner.name=z"])
    assert base == {"inner": {"depth": 9}}
    assert config.load_preset("small", "p")["inner"] == {"depth": 5}


def test_the_count_aware_training_preset_resolves_to_a_count_aware_recipe():
    """``fastdat train --preset countaware``: a conditioned 2.5D network trained on 2-15 min."""
    from fastdat.data.kinds import kind_minutes
    from fastdat.models.registry import model_info
    from fastdat.training.config import TrainConfig

    cfg = resolve(TrainConfig, preset=("train", "countaware"), sets=["seed=3"], section="train")
    assert model_info(cfg.model).conditioned and cfg.context == 1 and cfg.seed == 3
    minutes = [kind_minutes(k) for k in cfg.input_kinds]
    assert min(minutes) == 2 and max(minutes) == 15 and cfg.shift_px > 0 and cfg.rotate_deg > 0
