"""`cpt`: one line per verb without importing heavy modules; --config / --set / --print-config on the verbs that read
an experiment config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

from cpt.cli import COMMANDS, cli

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "config" / "config.yaml")


def test_help_describes_every_verb_without_importing_heavy_modules():
    code = ("import sys; from cpt.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'datasets', 'colossalai') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO / "src"), "PATH": ""}).stdout
    assert out.strip().endswith("HEAVY []"), out
    for verb, (_, line) in COMMANDS.items():
        assert verb in out and line.split()[0] in out, verb
    # every verb's module exists and exposes its command
    for verb in COMMANDS:
        assert cli.get_command(None, verb).name == verb


def _yaml(result) -> dict:
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.output)


def test_print_config_shows_a_stages_resolved_settings():
    r = CliRunner().invoke(cli, ["prepare-pretrain", "--config", DEMO, "--stage", "replay", "--set", "max_length=256",
                                 "--set", "dataset.num_workers=2", "--print-config"])
    out = _yaml(r)
    assert out["stage"]["max_length"] == 256 and out["stage"]["replay"] == {"from": ["base", "injection"],
                                                                            "share": 0.3}
    assert out["dataset"]["num_workers"] == 2 and out["dataset"]["pack_window"] == 8192  # a schema default
    # without --config: the schema's defaults, and the reference's flag names still win
    out = _yaml(CliRunner().invoke(cli, ["prepare-pretrain", "--max_length", "128", "--print-config"]))
    assert out["stage"]["max_length"] == 128 and out["stage"]["num_bins"] == 10
    r = CliRunner().invoke(cli, ["prepare-pretrain", "--config", DEMO, "--set", "max_length=lots", "--print-config"])
    assert r.exit_code != 0 and "dataset.max_length: 'lots' is not of type 'integer'" in str(r.exception)


def test_print_config_of_clean_and_corpus_verbs():
    out = _yaml(CliRunner().invoke(cli, ["clean", "--config", DEMO, "--set", "dedup.threshold=0.8", "--print-config"]))
    assert out["dedup"]["threshold"] == 0.8 and out["filters"]["zh"]["min_chars"] == 2
    out = _yaml(CliRunner().invoke(cli, ["build-corpus", "--print-config"]))
    assert set(out["categories"]) >= {"zh_news", "en_novel"} and out["categories"]["zh_news"]["kind"] == "builtin"
    out = _yaml(CliRunner().invoke(cli, ["split-corpus", "--config", DEMO, "--fraction", "0.1", "--print-config"]))
    assert out["heldout_fraction"] == 0.1 and out["min_heldout"] == 5


def test_python_dash_m_cpt_is_the_cpt_command():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "cpt", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Usage: cpt" in r.stdout and "train" in r.stdout, r.stderr
