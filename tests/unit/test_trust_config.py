"""Attacks on config files (issue 24, items 6, 7, 10): each is refused with one ConfigError naming the file, line
or key, and no reader hangs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cpt.core import config as cc
from cpt.core.errors import ConfigError
from cpt.core.schema import apply_overrides, complete
from cpt.core.yamlio import MAX_NODES, loads, read_yaml

REPO = Path(__file__).resolve().parents[2]


def _bomb(levels: int) -> str:
    """The classic billion-laughs document: level i lists level i-1 nine times (9**levels leaves, 447 bytes at 12)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_a_12_level_alias_bomb_is_refused_at_once(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(12), encoding="utf-8")
    start = time.monotonic()
    with pytest.raises(ConfigError, match=rf"bomb\.yaml:\d+: this value expands to more than {MAX_NODES} nodes "
                                          r"through YAML aliases"):
        read_yaml(path)
    assert time.monotonic() - start < 5  # walked once per node: milliseconds (it was about a day)
    with pytest.raises(ConfigError, match="alias bomb"):
        cc.load(path)


def test_shared_aliases_below_the_budget_still_load():
    data = loads(_bomb(4))  # 9**4 leaves: far below the budget, a legitimate use of anchors
    assert len(data["a4"]) == 9 and data["a4"][0][0][0][0] == data["a0"]
    assert loads("base: &b {lr: 1, wd: 2}\nstage: {<<: *b, lr: 3}\n")["stage"] == {"lr": 3, "wd": 2}
    # a duplicate key inside a shared node is still found (once), with its line
    with pytest.raises(ConfigError, match=r"<string>:1: config key x\.k: given twice"):
        loads("x: &x {k: 1, k: 2}\ny: [*x, *x, *x]\n")


@pytest.mark.parametrize("text", ["train:\n  defaults:\n    lr: .nan\n", "train:\n  defaults:\n    lr: -.inf\n"])
def test_non_finite_numbers_are_refused_naming_the_key(tmp_path, text):
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    demo["train"]["defaults"].update(yaml.safe_load(text)["train"]["defaults"])
    with pytest.raises(ConfigError, match=r"config key train\.defaults\.lr: -?(nan|inf) is not a finite number"):
        cc.validate(demo)
    # the same through --set (a string the schema's types turn into a float) and a section completed by a verb
    bad = apply_overrides(yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8")),
                          ["train.defaults.weight_decay=inf"])
    with pytest.raises(ConfigError, match=r"config key train\.defaults\.weight_decay: inf is not a finite number"):
        cc.validate(bad)
    with pytest.raises(ConfigError, match=r"config key train\.defaults\.lr: nan is not a finite number"):
        complete("train.defaults", {"lr": float("nan")})


def test_yte_marker_is_refused_by_the_loader(tmp_path):
    path = tmp_path / "yte.yaml"
    path.write_text("experiment: demo\n__use_yte__: true\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"yte\.yaml:2: config key __use_yte__: YTE templates are not accepted"):
        cc.read(path)


def test_snakemake_refuses_a_yte_config_before_any_job(tmp_path):
    text = (REPO / "config" / "config.yaml").read_text(encoding="utf-8")
    path = tmp_path / "yte.yaml"
    path.write_text("__use_yte__: true\n" + text, encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--directory", str(tmp_path),
         "--snakefile", str(REPO / "Snakefile"), "--configfile", str(path)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert out.returncode != 0
    assert "yte.yaml:1: config key __use_yte__: YTE templates are not accepted" in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()
