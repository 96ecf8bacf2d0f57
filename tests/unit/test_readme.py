"""The README starts with exactly the two set-up commands; .ci/run runs the second one."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def first_code_block():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("```bash")
    end = lines.index("```", start + 1)
    return [line for line in lines[start + 1:end] if line.strip()]


def test_two_setup_commands_first():
    block = first_code_block()
    assert len(block) == 2
    assert "snakemake" in block[0] and "install.sh" in block[0]
    assert "pytest" in block[1] and "install.sh" in block[1]


def test_ci_runs_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "README.md" in ci and "n==2" in ci
