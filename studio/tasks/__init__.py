"""The tasks and extra controls a job can name: one module each, exposing `TASK` or `CONTROL`.

`studio.registry.default_registry()` finds them here; nothing else lists them. Helper modules (`common`,
`inputs`) expose neither.
"""
