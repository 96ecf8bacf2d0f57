"""Training (recipe step 4): ColossalAI Booster trainer for multi-stage continual pre-training and SFT.

Modules: config (the `train:` section), compat (CPU shims, the only ColossalAI patches), plugins, data
(bucket-ordered resumable sampler, collator), optim (AdamW, cosine schedule, freezing, NEFTune), checkpoint,
metrics (tokens/s, MFU, metrics.jsonl, TensorBoard), loop (the program), cli (`cpt train`).
Importing this package is cheap: heavy imports happen inside the functions that need them.
"""
