"""Constrained decoding: one interface (base.py) that every decoder consults, and its kinds:
an allow-list as a vectorised trie (trie.py), JSON schemas and grammars through llguidance
(grammar.py). build.py turns a profile's [constraint] table into a compiled Constraint."""
