"""Batch jobs over folders of inputs: a resumable SQLite manifest, and the engines that work through it."""
