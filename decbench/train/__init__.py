"""`decbench distill`: self-distilled drafts for a target. data.py makes (and caches) the
target's own continuations; kinds.py is the registry of draft kinds, and student.py, medusa.py
and eagle.py each say how their kind is built, scored, evaluated and saved (the modules
themselves live in decbench.drafts); trainer.py runs the loop (progress, atomic checkpoints,
resume, held-out acceptance)."""
