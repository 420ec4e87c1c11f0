"""`python -m ui`: start the web UI on this machine (127.0.0.1, a free port) and print its address.

Listening on another address needs `--auth USER:PASS`: an exposed studio without a password is how
A1111 and ComfyUI instances were abused. There is never a public share link. The models offered are the
`--model` references given here (toyworld by default), never a path typed in the browser.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import tempfile
from pathlib import Path

LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ui", description="Diffusion Studio web UI.")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
    parser.add_argument("--port", type=int, default=None, help="Port (default: the first free one from 7860).")
    parser.add_argument("--auth", default=None, help="USER:PASS; required when --host is not a loopback address.")
    parser.add_argument(
        "--model", action="append", default=None, help="A model to offer (repeatable; default toyworld)."
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/ui"), help="Where results are written.")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N].")
    parser.add_argument("--precision", default="auto", help="auto, fp32, fp16 or bf16.")
    parser.add_argument("--memory", default="none", help="none, vae-slicing, vae-tiling or cpu-offload.")
    args = parser.parse_args(argv)
    if args.auth is not None and ":" not in args.auth:
        parser.error("--auth takes USER:PASS")
    if not is_loopback(args.host) and args.auth is None:
        parser.error(f"--host {args.host} is reachable from other machines; give --auth USER:PASS")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from studio.cli_support import model_cache
    from ui.app import StudioUI, launch_kwargs
    from ui.runs import SessionRuns

    args.out.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="studio-ui-"))
    runs = SessionRuns(model_cache(args.device, args.precision, args.memory), args.out.resolve())
    ui = StudioUI(runs, models=args.model or ["toyworld"], work_dir=work_dir)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    demo = ui.blocks()
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, auth=auth, **launch_kwargs(args.out.resolve()))


if __name__ == "__main__":
    sys.exit(main())
