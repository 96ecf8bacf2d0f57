"""The README starts with exactly the two set-up commands; .ci/run runs the second one."""

import re
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


def test_no_typed_run_figures_of_bits_per_byte():
    """Bits per byte are a run's output (report/summary.md, report.json): the README points there instead of
    typing figures that drift from what a fresh clone produces."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    paragraphs = re.split(r"\n\s*\n", text)
    typed = [p for p in paragraphs if re.search(r"bits[ -]per[ -]byte|bpb", p, re.I)
             and re.search(r"\b\d+\.\d\d\b", p)]
    assert not typed, "README paragraphs with bits-per-byte figures typed in:\n" + "\n---\n".join(typed)


def test_readme_and_docs_reference_only_files_in_the_repository():
    names = ("REFERENCE.md", "ENVIRONMENT.md", "DATA.md", "DESIGN.md", "PREAMBLE")
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    hits = [f"{f.relative_to(REPO)}: {n}" for f in files for n in names
            if n in f.read_text(encoding="utf-8") and not (REPO / n).exists()]
    assert not hits, hits
