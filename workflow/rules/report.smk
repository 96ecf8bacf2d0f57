# report: tables and plots of the experiment for `snakemake --report report.html` (Snakemake's own HTML report;
# captions in workflow/report/) and results/<experiment>/report/summary.md for terminals.
# Library: cpt.report. Same step without Snakemake: cpt report --results results/<experiment>
REPORT_DIR = L.report


rule report:
    input:
        # the evaluation points come after every training stage, so everything the report reads exists by then;
        # cpt.report reads the rest (compression.json, metrics.jsonl, manifests) from results/<experiment>/ and
        # lists whatever is missing (e.g. no SFT stage) in summary.md
        evaluations=[str(L.evaluate(p)) for p in EVAL_POINTS],
    output:
        tokenizer=report(str(REPORT_DIR / "tokenizer.html"), caption="../report/tokenizer.rst", category="Tokenizer"),
        loss_steps=report(str(REPORT_DIR / "loss_by_step.png"), caption="../report/loss.rst", category="Training"),
        loss_tokens=report(str(REPORT_DIR / "loss_by_tokens.png"), caption="../report/loss.rst",
                           category="Training"),
        bpb=report(str(REPORT_DIR / "bpb.png"), caption="../report/bpb.rst", category="Evaluation"),
        benchmarks=report(str(REPORT_DIR / "benchmarks.html"), caption="../report/benchmarks.rst",
                          category="Evaluation"),
        datasets=report(str(REPORT_DIR / "datasets.html"), caption="../report/datasets.rst", category="Data"),
        summary=str(REPORT_DIR / "summary.md"),
        json=str(REPORT_DIR / "report.json"),
    params:
        section=config["report"],
        stages=STAGES,
        points=EVAL_POINTS,
        experiment=EXP,
    log:
        logfile("report"),
    threads: 1
    resources:
        **rule_resources("report"),
    script:
        "../scripts/report_build.py"


if config["report"]["enabled"]:
    TARGETS.append(str(REPORT_DIR / "summary.md"))
