"""Trained drafts at inference time: the modules decoders load (EAGLE layer, Medusa heads, the
distilled student) and how they are stored. `decbench distill` (decbench.train) trains them;
nothing here imports the trainer, so decoders never import decbench.train."""
