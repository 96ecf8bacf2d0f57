"""cpt.launch.stage: a changed stage sets old checkpoints aside (never resumes them); an unchanged one keeps them."""

import json

import pytest

from cpt.core.errors import ConfigError
from cpt.launch import stage


def make_dirs(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "provenance.json").write_text(json.dumps({"config_sha256": "a", "created": "now"}))
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"num_tokens": 10}))
    out = tmp_path / "out"
    (out / "checkpoints" / "step-00000004").mkdir(parents=True)
    (out / "metrics.jsonl").write_text("{}\n")
    return model, data, out


def test_same_key_keeps_checkpoints(tmp_path):
    model, data, out = make_dirs(tmp_path)
    section = {"init_from": "init", "lr": 1e-3, "plugin": "ddp"}
    key = stage.run_key(section, model, data)
    (out / "run.json").write_text(json.dumps({"key": key}))
    assert stage.set_aside_stale(out, key) is None
    assert (out / "checkpoints" / "step-00000004").is_dir()


@pytest.mark.parametrize("change", ["lr", "data", "model"])
def test_changed_key_sets_checkpoints_aside(tmp_path, change):
    model, data, out = make_dirs(tmp_path)
    section = {"init_from": "init", "lr": 1e-3, "plugin": "ddp"}
    key = stage.run_key(section, model, data)
    (out / "run.json").write_text(json.dumps({"key": key}))
    if change == "lr":
        section = {**section, "lr": 2e-3}
    elif change == "data":
        (data / "manifest.json").write_text(json.dumps({"num_tokens": 11}))
    else:
        (model / "provenance.json").write_text(json.dumps({"config_sha256": "b", "created": "now"}))
    new = stage.run_key(section, model, data)
    assert new != key
    dest = stage.set_aside_stale(out, new)
    assert dest is not None and (dest / "checkpoints" / "step-00000004").is_dir()
    assert (dest / "metrics.jsonl").is_file()
    assert not (out / "checkpoints").exists()


def test_timestamps_do_not_change_the_key(tmp_path):
    model, data, out = make_dirs(tmp_path)
    section = {"init_from": "init"}
    key = stage.run_key(section, model, data)
    (model / "provenance.json").write_text(json.dumps({"config_sha256": "a", "created": "later"}))
    assert stage.run_key(section, model, data) == key


def test_workflow_keys_are_not_trainer_settings(tmp_path):
    model, data, _ = make_dirs(tmp_path)
    with pytest.raises(ConfigError, match=r"train\.lrr: Additional properties"):
        stage.run_key({"init_from": "init", "lrr": 1}, model, data)
