"""The core below every box: the experiment config and its schema (the only home of defaults), errors, provenance,
output locks, strict YAML, pinned sources, the resources section and the options every verb shares."""
