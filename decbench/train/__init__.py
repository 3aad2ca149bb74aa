"""`decbench distill`: self-distilled drafts for a target. data.py makes (and caches) the
target's own continuations, student.py and medusa.py define what is trained and how it is stored,
trainer.py runs the loop (progress, atomic checkpoints, resume, held-out acceptance)."""
