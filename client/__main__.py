"""ADNet client CLI: scenes -> Triton `adnet` -> HDR files.

python -m client INPUT... --out out/ [--ev A B C] [--url 127.0.0.1:8001] [--model adnet] [--concurrency 4]
    [--shm none|system|cuda] [--timeout 60] [--retries 3] [--admin-token T] [--exr] [--ntire-png] [--no-preview]
    [--no-progress]
(installed with `pip install .`: adnet-client INPUT... --out out/ ...)

--url may list several servers (round-robin, failover on UNAVAILABLE); --timeout is each scene's whole budget;
Ctrl-C cancels the requests in flight. INPUT: scene folders (NTIRE, Kalantari, or folders of them; see client/scenes.py), or three image files (short,
medium, long) with --ev. Exit code 0 when every scene succeeded, 1 when any failed (one message per failed scene on
stderr), 2 for usage errors.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from . import contract
from .errors import ClientError
from .infer import DEFAULT_URL, SHM_MODES, HDRClient
from .outputs import write_metrics, write_scene
from .scenes import find_scenes, scene_from_files

TOKEN_ENV = "ADNET_ADMIN_TOKEN"


def _parser() -> argparse.ArgumentParser:
    # The console script (pip install .) is adnet-client; from a checkout it is python -m client.
    prog = "adnet-client" if Path(sys.argv[0]).name == "adnet-client" else "python -m client"
    parser = argparse.ArgumentParser(
        prog=prog, description="Merge three LDR exposures into linear HDR with ADNet on Triton.",
        epilog="Exit code: 0 all scenes written, 1 a scene or the server failed, 2 usage error.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="scene folder(s), or three image files (short medium long) with --ev")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if needed)")
    parser.add_argument("--ev", nargs=3, type=float, metavar=("SHORT", "MEDIUM", "LONG"),
                        help="EV stops of three image files given as INPUT")
    parser.add_argument("--url", default=DEFAULT_URL,
                        help=f"Triton gRPC address (default {DEFAULT_URL}); several, comma-separated "
                        "(host1:8001,host2:8001), or dns:///NAME:PORT for a name with several addresses (a headless "
                        "Service): requests go round-robin and fail over to the others")
    parser.add_argument("--model", default=contract.MODEL_NAME, help=f"model name (default {contract.MODEL_NAME})")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    parser.add_argument("--shm", choices=SHM_MODES, default="none",
                        help="pass tensors through system or CUDA shared memory (server on this host)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds per scene, all retries included (a request still running then is cancelled, "
                        "not retried), and for the server to become ready (default 60)")
    parser.add_argument("--retries", type=int, default=3,
                        help="retries with exponential backoff when the server is unavailable, within --timeout "
                        "(default 3)")
    parser.add_argument("--admin-token", default=os.environ.get(TOKEN_ENV),
                        help=f"token for the server's restricted endpoints, e.g. shared memory (default ${TOKEN_ENV}; "
                        "else, for a server on this host, the token file its manager wrote)")
    parser.add_argument("--exr", action="store_true", help="also write {name}.exr (float32)")
    parser.add_argument("--ntire-png", action="store_true",
                        help="also write NTIRE's 16-bit {name}.png + {name}_alignratio.npy (gamma domain)")
    parser.add_argument("--no-preview", action="store_true", help="skip the tone-mapped {name}_preview.png")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _usage(parser: argparse.ArgumentParser, message: str) -> int:
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return 2


def _sources(parser, args) -> tuple[list, list[str], Optional[int]]:
    """(scene sources, discovery errors, usage exit code or None)."""
    paths = [Path(p) for p in args.inputs]
    if args.ev is not None:
        if any(p.is_dir() for p in paths):
            return [], [], _usage(parser, "--ev applies to three image files, not to folders (folders carry their "
                                          "own EV files)")
        try:
            return [scene_from_files(paths, args.ev)], [], None
        except ClientError as exc:
            return [], [str(exc)], None
    files = [p for p in paths if p.is_file()]
    if files:
        hint = "pass them with --ev SHORT MEDIUM LONG" if len(paths) == 3 and len(files) == 3 else \
            "pass scene folders, or exactly three image files with --ev SHORT MEDIUM LONG"
        return [], [], _usage(parser, f"{', '.join(map(str, files))}: image files need their EV stops; {hint}")
    sources, errors = [], []
    for path in paths:
        try:
            sources.extend(find_scenes(path))
        except ClientError as exc:
            errors.append(str(exc))
    seen = set()
    for source in sources:
        if source.name in seen:
            return [], [], _usage(parser, f"two scenes are named {source.name}; their outputs would overwrite each "
                                          "other: run them in separate calls with different --out folders")
        seen.add(source.name)
    return sources, errors, None


def main(argv: Optional[list[str]] = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help and usage errors: return the code instead of exiting a calling program
        return int(exc.code or 0)
    if args.concurrency < 1 or args.timeout <= 0 or args.retries < 0:
        return _usage(parser, "--concurrency must be >= 1, --timeout > 0 and --retries >= 0")
    sources, failures, usage = _sources(parser, args)
    if usage is not None:
        return usage
    for message in failures:
        print(f"error: {message}", file=sys.stderr)
    if not sources:
        return 1
    try:
        client = HDRClient(args.url, args.model, timeout=args.timeout, retries=args.retries,
                           admin_token=args.admin_token, shm=args.shm)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    written, failed = [], len(failures)
    try:
        with client:
            info = client.wait_until_ready()
            print(f"{args.model} at {args.url} (LDR {info.ldr_dtype.name}): {len(sources)} scene(s) -> {args.out}/")
            for result in client.infer_many(sources, concurrency=args.concurrency, progress=not args.no_progress):
                try:
                    if not result.ok:
                        raise result.error
                    scene_out = write_scene(args.out, result.scene, result.hdr, exr=args.exr,
                                            ntire_png=args.ntire_png, preview=not args.no_preview)
                except ClientError as exc:
                    failed += 1
                    tqdm.write(f"error: {result.name}: {exc}", file=sys.stderr)
                    continue
                written.append(scene_out)
                metrics = scene_out.metrics
                score = (f"  PSNR-l {metrics['psnr_l']:.2f} dB, PSNR-mu {metrics['psnr_mu']:.2f} dB "
                         f"({metrics['convention']})" if metrics else "")
                # tqdm.write keeps these lines clear of the progress bar
                tqdm.write(f"{result.name}: {', '.join(str(p) for p in scene_out.files)}{score}", file=sys.stdout)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    for path in write_metrics(args.out, written):
        print(f"metrics: {path}")
    total = len(written) + failed
    print(f"wrote {len(written)} of {total} scene(s) to {args.out}/" + (f"; {failed} failed" if failed else ""),
          file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
