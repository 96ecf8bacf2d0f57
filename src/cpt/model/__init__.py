"""Models: the base model (a tiny seeded LLaMA or the user's HF directory) and the initialisation of the embedding
rows of new tokenizer pieces.

Modules, one idea each: `vocab` (tokenizer facts read with SentencePiece's protobuf), `layout` (where the tensors of
a HF checkpoint live), `safetensors_io` (streaming safetensors reads and writes), `base` (building and checking
model/base), `rows` (the init math: new rows per method), `init` (the init step: model/init), `init_report` (row
norms and held-out loss / bits per byte before and after), `cli` (`cpt base-model`, `cpt init-embeddings`).
"""
