# report: tables and plots of the experiment for `snakemake --report report.html` (Snakemake's own HTML report;
# captions in workflow/report/) and results/<experiment>/report/summary.md for terminals.
# Library: cpt.report.build. Same step without Snakemake: cpt report --results results/<experiment>
from cpt.core.resources import train_devices


rule report:
    input:
        # everything cpt.report.build.collect reads, so the report reruns when any of it changes
        compression=str(L.compression),
        init=str(L.model_init),  # report.json: the init methods compared
        corpus=[str(L.corpus_raw), str(L.corpus_train), str(L.corpus_heldout)],
        clean=[str(L.clean)] if config["clean"]["enabled"] else [],
        datasets=[str(L.dataset(s)) for s in STAGES],  # <stage>/manifest.json
        # train/<stage>/final carries the stage's training record (cpt.artifacts.stagedir.FINAL_RECORD)
        training=[str(L.final(s)) for s in STAGES],
        evaluations=[str(L.evaluate(p)) for p in EVAL_POINTS],  # <point>/benchmarks.json, bpb.json
        generations=[str(L.generations(p)) for p in EVAL_POINTS] if GENERATE_ON else [],
    output:
        tokenizer=report(str(L.report_file("tokenizer.html")), caption="../report/tokenizer.rst", category="Tokenizer"),
        loss_steps=report(str(L.report_file("loss_by_step.png")), caption="../report/loss.rst", category="Training"),
        loss_tokens=report(str(L.report_file("loss_by_tokens.png")), caption="../report/loss.rst", category="Training"),
        bpb=report(str(L.report_file("bpb.png")), caption="../report/bpb.rst", category="Evaluation"),
        benchmarks=report(
            str(L.report_file("benchmarks.html")), caption="../report/benchmarks.rst", category="Evaluation"
        ),
        datasets=report(str(L.report_file("datasets.html")), caption="../report/datasets.rst", category="Data"),
        cost=report(str(L.report_file("cost.html")), caption="../report/cost.rst", category="Cost"),
        summary=str(L.report_file("summary.md")),
        json=str(L.report_file("report.json")),
    log:
        logfile("report"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("report"),
    params:
        section=config["report"],
        stages=STAGES,
        points=EVAL_POINTS,
        experiment=EXP,
        devices=train_devices(config.get("resources")),  # the cost projection's default device count
    script:
        "../scripts/report_build.py"


if config["report"]["enabled"]:
    TARGETS.append(str(L.report_file("summary.md")))
