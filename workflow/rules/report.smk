# report: tables and plots of the experiment for `snakemake --report report.html` (Snakemake's own HTML report;
# captions in workflow/report/) and results/<experiment>/report/summary.md for terminals.
# Library: cpt.report. Same step without Snakemake: cpt report --results results/<experiment>
from cpt.cost import train_devices

REPORT_DIR = L.report


rule report:
    input:
        # everything cpt.report.collect reads, so the report reruns when any of it changes
        compression=str(L.compression),
        init=str(L.model_init),  # report.json: the init methods compared
        corpus=[str(L.corpus_raw), str(L.corpus_train), str(L.corpus_heldout)],
        clean=[str(L.clean)] if config["clean"]["enabled"] else [],
        datasets=[str(L.dataset(s)) for s in STAGES],  # <stage>/manifest.json
        # train/<stage>/metrics.jsonl is written by the job that writes train/<stage>/final (its declared output)
        training=[str(L.final(s)) for s in STAGES],
        evaluations=[str(L.evaluate(p)) for p in EVAL_POINTS],  # <point>/benchmarks.json, bpb.json
        generations=[str(L.generations(p)) for p in EVAL_POINTS] if GENERATE_ON else [],
    output:
        tokenizer=report(str(REPORT_DIR / "tokenizer.html"), caption="../report/tokenizer.rst", category="Tokenizer"),
        loss_steps=report(str(REPORT_DIR / "loss_by_step.png"), caption="../report/loss.rst", category="Training"),
        loss_tokens=report(str(REPORT_DIR / "loss_by_tokens.png"), caption="../report/loss.rst",
                           category="Training"),
        bpb=report(str(REPORT_DIR / "bpb.png"), caption="../report/bpb.rst", category="Evaluation"),
        benchmarks=report(str(REPORT_DIR / "benchmarks.html"), caption="../report/benchmarks.rst",
                          category="Evaluation"),
        datasets=report(str(REPORT_DIR / "datasets.html"), caption="../report/datasets.rst", category="Data"),
        cost=report(str(REPORT_DIR / "cost.html"), caption="../report/cost.rst", category="Cost"),
        summary=str(REPORT_DIR / "summary.md"),
        json=str(REPORT_DIR / "report.json"),
    params:
        section=config["report"],
        stages=STAGES,
        points=EVAL_POINTS,
        experiment=EXP,
        devices=train_devices(config.get("resources")),  # the cost projection's default device count
    log:
        logfile("report"),
    threads: 1
    resources:
        **resources_of("report"),
    script:
        "../scripts/report_build.py"


if config["report"]["enabled"]:
    TARGETS.append(str(REPORT_DIR / "summary.md"))
