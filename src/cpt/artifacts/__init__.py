"""One owner per artifact: the results layout (every path a rule names), a corpus (categories, languages, record
text), jsonl records, a dataset stage directory, a training stage directory, the identity of a tokenizer."""
