"""`studio train`: a tuning job over a folder of concept images (reading and checking the folder, the model, the
progress bar, the tuned file and its JSON report). The trainer itself is `pipelines.tuning`.
"""
