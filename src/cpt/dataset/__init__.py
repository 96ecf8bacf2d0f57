"""Dataset preparation (package `cpt.dataset`): jsonl -> tokenized cache -> per-stage selection -> ordered buckets of packed sequences.

Two passes, memory flat in corpus size:
  1. `tokenize_corpus`: stream every jsonl file in blocks of lines, parse + tokenize them (a process pool, or the
     tokenizer's own threads), append to one memory-mapped arrow file per category (`_tokenized/`).
  2. `build_stage`: choose the stage's documents (config: categories with token caps / mixing weights, a replay
     share drawn from earlier stages), split every category into N bins of near-equal tokens, bucket i = bin i of
     every category; per bucket: split overlong documents, best-fit pack, seeded shuffle, save_to_disk.
The stage directory gets bucket-00000/ ... and manifest.json (+ provenance.json).

Stage-data config (the `dataset:` section; see `DEFAULTS` and `stage_settings`):

    dataset:
      max_length: 4096           # tokens per sequence
      num_bins: 10               # bins per category = buckets per stage
      seed: 42
      overlong: split            # split | truncate | drop
      on_bad_record: raise       # raise | skip (skips counted per cpt.artifacts.records reason)
      stages:
        injection:
          kind: pretrain          # pretrain | sft
          categories:             # which categories feed the stage (default: all)
            zh_news: {max_tokens: 2000000}   # cap (whole documents, seeded order)
            en_bible: {weight: 1.0}          # mixing weights: all categories or none
          replay: {from: [base], share: 0.2}  # 20% of the stage's tokens replayed from base's documents

Modules, one idea each: `settings` (the dataset section's defaults and per-stage settings), `tokenized` (pass 1 and
the tokenized cache), `selection` (a stage's documents and its replay share), `build` (pass 2: bins, buckets,
packing), `manifest` (what a stage's manifest.json records), `cli` (`cpt prepare-pretrain`, `cpt prepare-sft`).
"""
