"""One process of `studio batch --engine accelerate`, started by accelerate's launcher (never by hand).

Each process reads the same spec and the driver's list of pending keys, takes its share with
`PartialState.split_between_processes`, loads the model once, and writes through the one manifest.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from accelerate import PartialState

    from studio.batch.engines import PLAN_NAME, RunSettings, run_groups
    from studio.batch.run import prepare
    from studio.batch.spec import load_spec
    from studio.cli_support import model_cache
    from studio.quiet import quiet_environment
    from studio.registry import default_registry

    parser = argparse.ArgumentParser()
    parser.add_argument("spec", type=Path)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--memory", default="none")
    args = parser.parse_args()
    quiet_environment()
    import torch

    torch.set_num_threads(args.threads)
    state = PartialState()
    spec = load_spec(args.spec)
    registry = default_registry()
    plan = prepare(spec, registry)
    out = Path(spec.out)
    pending = set(json.loads((out / PLAN_NAME).read_text()))
    todo = [index for index, group in enumerate(plan.groups) if any(item.key in pending for item in group)]
    device = args.device if args.device not in ("auto",) else str(state.device)
    settings = RunSettings(
        engine="accelerate", threads=args.threads, device=device, precision=args.precision, memory=args.memory
    )
    from studio.batch.manifest import Manifest

    with Manifest.open(out, plan.fingerprint) as manifest, state.split_between_processes(todo) as mine:
        models = model_cache(settings.device, settings.precision, settings.memory)
        groups = [plan.groups[index] for index in mine]
        run_groups(groups, manifest, registry, plan.root, models, f"accelerate-{state.process_index}")


if __name__ == "__main__":
    main()
