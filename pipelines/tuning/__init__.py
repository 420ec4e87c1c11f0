"""Tuning methods: one trainer (accelerate + peft) with three recipes (LoRA, ClassDiffusion, personalized residuals).

The training step and losses live here; reading the user's image folder, the job, the progress bar and the
report live in `studio/training/`. Nothing here does file I/O except writing the checkpoints and the tuned
weights the caller asks for.
"""
