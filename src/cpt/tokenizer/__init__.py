"""The tokenizer stage of the recipe (Step 1, parts 4-7).

  base.build_base_tokenizer          LLaMA-2 tokenizer rebuilt from llama.cpp's GGUF vocabulary (or a local dir),
                                     verified against llama.cpp's reference tokenizations, saved as an HF dir
  pieces.select_pieces               candidate pieces (trained zh BPE model, word lists, user list) -> pieces.jsonl
  expand.build_extended_tokenizer    append pieces, guarantee reachability, keep English identical, save HF dir
  compression.compression_report     tokens per character / per sample, base vs extended
Building blocks: spm (ModelProto I/O, BPE rule), from_gguf (GGUF + reference files), hf (HF dirs, slow/fast checks).
"""

from cpt.tokenizer.base import build_base_tokenizer
from cpt.tokenizer.compression import compression_report
from cpt.tokenizer.extended import build_extended_tokenizer
from cpt.tokenizer.pieces import select_pieces

__all__ = ["build_base_tokenizer", "select_pieces", "build_extended_tokenizer", "compression_report"]
