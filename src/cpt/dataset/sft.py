"""SFT conversations -> token ids + loss mask (loss only on assistant turns, including their end token).

Two families of templates. The recipe's own ("llama2", "llama3", "plain") are below; the models' chat formats
("chatml" for SmolLM2/Qwen, "llama3_chat" for Meta's LLaMA-3 header format) put each turn between special tokens:

    chatml        <|im_start|>{role}\n{content}<|im_end|>\n                      (system turn first; no bos)
    llama3_chat   <|begin_of_text|> <|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|> ...

For those, the text between two special tokens is encoded as one piece, exactly as an HF tokenizer encodes the
rendered template (added tokens split the text first), and the loss boundary inside "{role}\n{content}" is found
by character offsets; `chat_template(name)` is the Jinja template that renders the same text, written into the
tokenizer_config.json of every SFT model, so `apply_chat_template` builds the ids training used. The recipe's
templates get a chat_template too; it renders the same text, but their segments are encoded one by one, so a
whole-string encoding can differ at a segment start (measured: SentencePiece's dummy "▁" before "Human: ").

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

Records are validated by cpt.artifacts.records (SFT schema: same reason codes and file:line errors as every other stage);
`dataset.on_bad_record: raise | skip` is its on_error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cpt.artifacts.dataset import IGNORE_INDEX
from cpt.artifacts.records import RecordStats, iter_lines
from cpt.core.errors import ConfigError, RecordError, TokenizerError
from cpt.dataset.packing import add_bad_records_hint, encode_texts

SYSTEM_PROMPT = ("A chat between a curious human and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the human's questions.\n\n")
ROLES = {"human": "Human", "assistant": "Assistant"}


SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@dataclass(frozen=True)
class Template:
    name: str
    system: str
    begin: str | None        # token text opening each turn's content (None: no separator)
    end: str | None          # token text closing each turn (None: the tokenizer's eos)
    human_end: bool = True   # whether human turns are closed by `end` too
    newline_after_turn: bool = False
    # header style (chatml, llama3_chat): open {role} [mid] pre+content close after; head once at the start
    header: bool = False
    head: str | None = None  # token text before everything (llama3_chat: <|begin_of_text|>)
    mid: str | None = None   # token text after the role name (llama3_chat: <|end_header_id|>)
    pre: str = ""            # text between the role (or mid) and the content
    after: str = ""          # text after the closing token (chatml: newline)


TEMPLATES = {
    "llama2": Template("llama2", SYSTEM_PROMPT, "<s>", "</s>"),
    "llama3": Template("llama3", SYSTEM_PROMPT, "<|begin_of_text|>", "<|eot_id|>"),
    "plain": Template("plain", "", None, None, human_end=False, newline_after_turn=True),
    "chatml": Template("chatml", SMOLLM_SYSTEM, "<|im_start|>", "<|im_end|>", header=True, pre="\n", after="\n"),
    "llama3_chat": Template("llama3_chat", "", "<|start_header_id|>", "<|eot_id|>", header=True,
                            head="<|begin_of_text|>", mid="<|end_header_id|>", pre="\n\n"),
}
HEADER_ROLES = {"human": "user", "assistant": "assistant", "system": "system"}


def _lit(text: str) -> str:
    return "{{ " + json.dumps(text) + " }}"


def chat_template(name: str) -> str:
    """The Jinja chat template (HF tokenizer_config.json) that renders conversations as template `name` does."""
    t = get_template(name)
    msg = "{% for m in messages %}"
    if t.header:
        turn = (_lit(t.begin) + "{{ m['role'] }}" + (_lit(t.mid) if t.mid else "") + _lit(t.pre)
                + "{{ m['content'] }}" + _lit(t.end) + (_lit(t.after) if t.after else ""))
        system = (_lit(t.begin + "system" + (t.mid or "") + t.pre + t.system + t.end + t.after)
                  if t.system else "")
        gen = _lit(t.begin + "assistant" + (t.mid or "") + t.pre)
        head = _lit(t.head) if t.head else ""
        first = "{% if messages[0]['role'] != 'system' %}" + system + "{% endif %}" if system else ""
        return head + first + msg + turn + "{% endfor %}{% if add_generation_prompt %}" + gen + "{% endif %}"
    role = "{% if m['role'] == 'user' %}" + _lit("Human: ") + "{% else %}" + _lit("Assistant: ") + "{% endif %}"
    begin = _lit(t.begin) if t.begin else ""
    end = _lit(t.end) if t.end else "{{ eos_token }}"
    close = end if t.human_end else "{% if m['role'] == 'assistant' %}" + end + "{% endif %}"
    nl = _lit("\n") if t.newline_after_turn else ""
    head = "{{ bos_token }}" + (_lit(t.system) if t.system else "")
    gen = _lit("Assistant: ") + begin
    return head + msg + role + begin + "{{ m['content'] }}" + close + nl + "{% endfor %}" \
        "{% if add_generation_prompt %}" + gen + "{% endif %}"


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise ConfigError(f"dataset.sft.template: {name!r} is not one of {sorted(TEMPLATES)}")
    return TEMPLATES[name]


class SFTEncoder:
    """Encodes conversations with one tokenizer and one template."""

    def __init__(self, tokenizer, template: str | Template, max_length: int):
        from cpt.dataset.packing import backend_tokenizer

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
        if t.header:
            self.mid_id = self._special(tokenizer, t.mid) if t.mid else None
            self.head_ids = [self._special(tokenizer, t.head)] if t.head else []
            if t.system:
                self.head_ids += self._header_turns([("system", t.system)])[0][0]
            return
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

    def _header_turns(self, turns: Sequence[tuple[str, str]], generation: bool = False
                      ) -> list[tuple[list[int], list[int]]]:
        """Header-style turns: open [role mid] pre+content close after; the text between two special tokens is
        encoded as one piece (as HF encodes the rendered template); the loss starts where the prompt part's own
        ids stop being a prefix of the piece's ids. generation: the last turn is only "open role [mid] pre"."""
        t = self.template
        heads, joint = [], []
        for i, (role, text) in enumerate(turns):
            name = HEADER_ROLES[role]
            prefix = t.pre if t.mid else name + t.pre
            heads.append(prefix)
            joint.append(prefix if generation and i == len(turns) - 1 else prefix + text)
        names = encode_texts(self.backend, [HEADER_ROLES[r] for r, _ in turns]) if t.mid else None
        enc = encode_texts(self.backend, heads + joint)
        after = encode_texts(self.backend, [t.after])[0]
        out = []
        for i, (role, _) in enumerate(turns):
            ids = [self.begin_id] + ((names[i] + [self.mid_id]) if t.mid else [])
            head, piece = enc[i], enc[len(turns) + i]
            cut = 0
            while cut < min(len(head), len(piece)) and head[cut] == piece[cut]:
                cut += 1
            n_prompt = len(ids) + cut
            ids += piece
            if generation and i == len(turns) - 1:
                out.append((ids, [IGNORE_INDEX] * len(ids)))
                break
            ids.append(self.end_id)
            labels = [IGNORE_INDEX] * n_prompt
            labels += ids[n_prompt:] if role == "assistant" else [IGNORE_INDEX] * (len(ids) - n_prompt)
            out.append((ids + after, labels + [IGNORE_INDEX] * len(after)))
        return out

    def encode_many(self, conversations: Sequence[list[tuple[str, str]]]) -> list[tuple[list[int], list[int], int] | None]:
        """For each validated conversation [(role, text), ...] (human/assistant pairs): (ids, labels, dropped
        turns) or None when not even the first pair fits max_length."""
        header = self.template.header
        texts = [] if header else [text for conv in conversations for _, text in conv]
        enc = encode_texts(self.backend, texts)
        out, k = [], 0
        for conv in conversations:
            head_ids = list(self.head_ids) if header else [self.bos_id, *self.system_ids]
            head_labels = [IGNORE_INDEX] * len(head_ids)
            turns = self._header_turns(conv) if header else []
            for role, _ in ([] if header else conv):
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
        if self.template.header:
            turns = self._header_turns([*conv, ("assistant", "")], generation=True)
            return list(self.head_ids) + [i for ids, _ in turns for i in ids]
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
    """[(role, text), ...] of a record cpt.artifacts.records accepted, and the trailing human turns dropped (0 or 1): a
    conversation that ends on a question has nothing to learn from its last turn."""
    conv = [(m["from"], m["content"]) for m in rec["messages"]]
    if conv[-1][0] == "human":
        return conv[:-1], 1
    return conv, 0


def tokenize_sft_lines(encoder: SFTEncoder, lines: Sequence[bytes], path: str, first_line: int,
                       default_category: str, on_error: str, records: RecordStats | None = None):
    """Validate (cpt.artifacts.records, SFT schema) + encode a block of jsonl lines.

    Returns (categories, ids_list, labels_list, lines, stats): stats counts what the dataset does to valid
    conversations (trailing turns dropped, turns dropped to fit, first turn too long); record validation (lines,
    blank lines, bad records per cpt.artifacts.records reason) is counted in `records`.
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


def write_sft_chat_template(model_dir, dataset_dir) -> str | None:
    """When `dataset_dir` (a dataset stage: manifest.json) is SFT data, write its template's chat_template into
    <model_dir>/tokenizer_config.json; returns the template name (None: not SFT data, nothing written)."""
    from pathlib import Path

    from cpt.tokenizer.family import write_chat_template

    path = Path(dataset_dir) / "manifest.json"
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text(encoding="utf-8"))
    name = (manifest.get("settings") or {}).get("template")
    if manifest.get("kind") != "sft" or not name:
        return None
    write_chat_template(model_dir, chat_template(name))
    return name
