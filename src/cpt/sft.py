"""SFT conversations -> token ids + loss mask (loss only on assistant turns, including their end token).

Layout of one conversation (templates "llama2" / "llama3", as in the recipe):

    [bos] system-prompt  "Human: " [begin] human-text [end]  "Assistant: " [begin] assistant-text [end] ...

with [begin]/[end] = <s>/</s> (LLaMA-2) or <|begin_of_text|>/<|eot_id|> (LLaMA-3). The "plain" template has no
system prompt and no begin separator: [bos] "Human: " text "\\n" "Assistant: " text [eos] "\\n"...  (the eos
closes each assistant turn).

Every text segment is tokenized on its own (no special tokens, special-token text inside content stays text), so
the loss boundaries are exact token positions, never found again by searching for separator ids. Labels carry the
assistant text and its end token; the begin separator that opens an assistant turn is part of the prompt (a
generation prompt ends with it, see `encode_prompt`). Turns (human + assistant pairs) are dropped from the end
until the conversation fits max_length; if not even the first pair fits, the conversation is skipped and counted.

Records are validated by cpt.records (SFT schema: same reason codes and file:line errors as every other stage);
`dataset.on_bad_record: raise | skip` is its on_error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cpt.errors import ConfigError, RecordError, TokenizerError
from cpt.packing import IGNORE_INDEX, add_bad_records_hint, encode_texts
from cpt.records import RecordStats, iter_lines

SYSTEM_PROMPT = ("A chat between a curious human and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the human's questions.\n\n")
ROLES = {"human": "Human", "assistant": "Assistant"}


@dataclass(frozen=True)
class Template:
    name: str
    system: str
    begin: str | None        # token text opening each turn's content (None: no separator)
    end: str | None          # token text closing each turn (None: the tokenizer's eos)
    human_end: bool = True   # whether human turns are closed by `end` too
    newline_after_turn: bool = False


TEMPLATES = {
    "llama2": Template("llama2", SYSTEM_PROMPT, "<s>", "</s>"),
    "llama3": Template("llama3", SYSTEM_PROMPT, "<|begin_of_text|>", "<|eot_id|>"),
    "plain": Template("plain", "", None, None, human_end=False, newline_after_turn=True),
}


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise ConfigError(f"dataset.sft.template: {name!r} is not one of {sorted(TEMPLATES)}")
    return TEMPLATES[name]


class SFTEncoder:
    """Encodes conversations with one tokenizer and one template."""

    def __init__(self, tokenizer, template: str | Template, max_length: int):
        from cpt.packing import backend_tokenizer

        self.template = template if isinstance(template, Template) else get_template(template)
        self.max_length = int(max_length)
        self.backend = backend_tokenizer(tokenizer)
        self.bos_id = tokenizer.bos_token_id
        self.eos_id = tokenizer.eos_token_id
        if self.bos_id is None or self.eos_id is None:
            raise TokenizerError(f"{tokenizer.name_or_path}: needs bos and eos tokens for SFT templates")
        self.begin_id = self._special(tokenizer, self.template.begin) if self.template.begin else None
        self.end_id = self._special(tokenizer, self.template.end) if self.template.end else self.eos_id
        t = self.template
        pieces = [t.system, "Human: ", "Assistant: ", "\n"]
        enc = encode_texts(self.backend, pieces)
        self.system_ids = enc[0]
        self.role_ids = {"human": enc[1], "assistant": enc[2]}
        self.newline_ids = enc[3]

    def _special(self, tokenizer, text: str) -> int:
        tid = tokenizer.convert_tokens_to_ids(text)
        if tid is None or (tid == tokenizer.unk_token_id and text != tokenizer.unk_token):
            raise TokenizerError(
                f"{tokenizer.name_or_path}: has no token {text!r} needed by SFT template {self.template.name!r}; "
                f"choose dataset.sft.template llama2 or plain, or add the token to the tokenizer"
            )
        return int(tid)

    def _turn(self, role: str, content_ids: list[int]) -> tuple[list[int], list[int]]:
        t = self.template
        ids = list(self.role_ids[role])
        if self.begin_id is not None:
            ids.append(self.begin_id)
        n_prompt = len(ids)
        ids.extend(content_ids)
        closes = role == "assistant" or t.human_end
        if closes:
            ids.append(self.end_id)
        labels = [IGNORE_INDEX] * n_prompt
        if role == "assistant":
            labels.extend(ids[n_prompt:])
        else:
            labels.extend([IGNORE_INDEX] * (len(ids) - n_prompt))
        if t.newline_after_turn:
            ids.extend(self.newline_ids)
            labels.extend([IGNORE_INDEX] * len(self.newline_ids))
        return ids, labels

    def encode_many(self, conversations: Sequence[list[tuple[str, str]]]) -> list[tuple[list[int], list[int], int] | None]:
        """For each validated conversation [(role, text), ...] (human/assistant pairs): (ids, labels, dropped
        turns) or None when not even the first pair fits max_length."""
        texts = [text for conv in conversations for _, text in conv]
        enc = encode_texts(self.backend, texts)
        out, k = [], 0
        for conv in conversations:
            head_ids = [self.bos_id, *self.system_ids]
            head_labels = [IGNORE_INDEX] * len(head_ids)
            turns = []
            for role, _ in conv:
                turns.append(self._turn(role, enc[k]))
                k += 1
            # pairs = (human, assistant); keep the longest prefix of pairs that fits
            ids, labels, used = list(head_ids), list(head_labels), 0
            for p in range(0, len(turns), 2):
                pair_len = len(turns[p][0]) + len(turns[p + 1][0])
                if len(ids) + pair_len > self.max_length:
                    break
                ids += turns[p][0] + turns[p + 1][0]
                labels += turns[p][1] + turns[p + 1][1]
                used += 1
            if used == 0:
                out.append(None)
            else:
                out.append((ids, labels, len(turns) // 2 - used))
        return out

    def encode_prompt(self, history: Sequence[tuple[str, str]], question: str) -> list[int]:
        """Ids of a generation prompt: history pairs, the new human turn, then "Assistant: " [begin]."""
        conv = [*history, ("human", question)]
        enc = encode_texts(self.backend, [text for _, text in conv])
        ids = [self.bos_id, *self.system_ids]
        for (role, _), c in zip(conv, enc):
            ids += self._turn(role, c)[0]
        ids += self.role_ids["assistant"]
        if self.begin_id is not None:
            ids.append(self.begin_id)
        return ids


# ------------------------------------------------------------------------------------------- validation
def conversation_of(rec: dict) -> tuple[list[tuple[str, str]], int]:
    """[(role, text), ...] of a record cpt.records accepted, and the trailing human turns dropped (0 or 1): a
    conversation that ends on a question has nothing to learn from its last turn."""
    conv = [(m["from"], m["content"]) for m in rec["messages"]]
    if conv[-1][0] == "human":
        return conv[:-1], 1
    return conv, 0


def tokenize_sft_lines(encoder: SFTEncoder, lines: Sequence[bytes], path: str, first_line: int,
                       default_category: str, on_error: str, records: RecordStats | None = None):
    """Validate (cpt.records, SFT schema) + encode a block of jsonl lines.

    Returns (categories, ids_list, labels_list, lines, stats): stats counts what the dataset does to valid
    conversations (trailing turns dropped, turns dropped to fit, first turn too long); record validation (lines,
    blank lines, bad records per cpt.records reason) is counted in `records`.
    """
    records = records if records is not None else RecordStats()
    stats: dict[str, int] = {}

    def count(key, n=1):
        stats[key] = stats.get(key, 0) + n

    cats, convs, line_nos = [], [], []
    try:
        for line_no, rec in iter_lines(lines, path, first_line, "sft", on_error, records):
            conv, trailing = conversation_of(rec)
            if trailing:
                count("trailing_human_turn_dropped")
            cats.append(rec.get("category") or default_category)
            convs.append(conv)
            line_nos.append(line_no)
    except RecordError as err:
        raise add_bad_records_hint(err)
    out_c, out_ids, out_labels, out_lines = [], [], [], []
    for cat, line_no, res in zip(cats, line_nos, encoder.encode_many(convs)):
        if res is None:
            count("skipped:first_turn_too_long")
            continue
        ids, labels, dropped = res
        if dropped:
            count("turns_dropped_to_fit", dropped)
            count("conversations_shortened")
        out_c.append(cat)
        out_ids.append(ids)
        out_labels.append(labels)
        out_lines.append(line_no)
    return out_c, out_ids, out_labels, out_lines, stats


def labels_array(labels) -> np.ndarray:
    return np.asarray(labels, dtype=np.int32)
