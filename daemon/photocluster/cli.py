"""Command line: `photocluster [-c CONFIG] run|scan|recluster|status|confirm-deletions|
check-config|weights`.

The only place that configures logging and turns errors into exit codes, each failure one
line on stderr:
0 ok; 1 runtime error; 2 bad configuration or usage; 3 another photocluster holds this state
directory (the units' RestartPreventExitStatus= names 2 and 3: restarting fixes neither).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from photocluster import status, vanish, weights
from photocluster.config import Config, load_config
from photocluster.errors import ConfigError, LockedError, PhotoclusterError, SignalError
from photocluster.locking import Holder, state_holder

logger = logging.getLogger("photocluster")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_LOCKED = 0, 1, 2, 3


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        config = load_config(Path(args.config))
        if not args.verbose:
            logging.getLogger().setLevel(config.log.level)
        return int(_COMMANDS[args.command](config, args))
    except (PhotoclusterError, OSError) as error:
        return _report(error)
    except KeyboardInterrupt:
        return EXIT_ERROR


def _report(error: PhotoclusterError | OSError) -> int:
    """Say what went wrong on stderr, in one line but for a config's list; return the code."""
    if isinstance(error, ConfigError):
        print(error, file=sys.stderr)
        return EXIT_CONFIG
    if isinstance(error, OSError):  # e.g. the photo folder is missing, or the state not ours
        if error.filename is None:
            logger.error("%s", error)
        else:
            logger.error("%s: %r", error.strerror or type(error).__name__, error.filename)
        logger.debug("the failure in full", exc_info=error)  # shown with -v
        return EXIT_ERROR
    logger.error("%s", error)
    return EXIT_LOCKED if isinstance(error, LockedError) else EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="photocluster", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-c", "--config", default=os.environ.get("PHOTOCLUSTER_CONFIG", "config.toml")
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the daemon in the foreground")
    commands.add_parser("scan", help="sort everything once, then exit")
    recluster = commands.add_parser("recluster", help="recluster now (signals a running daemon)")
    recluster.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    state = commands.add_parser("status", help="what is sorted, failed and pending")
    state.add_argument("--json", action="store_true")
    commands.add_parser(
        "confirm-deletions",
        help="delete the photos `status` says look deleted (a folder or mount that vanished)",
    )
    commands.add_parser("check-config", help="validate the configuration")
    commands.add_parser("weights", help="fetch and verify the VGG16 weights")
    return parser


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _run(config: Config, args: argparse.Namespace) -> int:
    from photocluster import library  # heavy (scikit-learn, scipy): not for `status`
    from photocluster.service import run_daemon

    return run_daemon(config, library.vgg16_embedder)


def _scan(config: Config, args: argparse.Namespace) -> int:
    from photocluster import library

    with library.open_library(config, "scan", library.vgg16_embedder) as lib:
        library.scan(lib)
    return EXIT_OK


def _recluster(config: Config, args: argparse.Namespace) -> int:
    holder = state_holder(config.paths.state)
    if holder is not None and holder.role == "run" and not args.dry_run:
        _signal_recluster(holder, config.paths.state)
        print(f"asked the running daemon (pid {holder.pid}) to recluster")
        return EXIT_OK
    from photocluster import library

    with library.open_library(config, "recluster", library.vgg16_embedder) as lib:
        changes = library.recluster_now(lib, force=True, dry_run=args.dry_run)
    if args.dry_run:
        print("\n".join(changes or ["no changes"]))
    return EXIT_OK


def _signal_recluster(holder: Holder, state: Path) -> None:
    """SIGUSR1 to the daemon named in the lock file.

    Raises LockedError when that pid is gone while the lock is still held (the daemon is
    exiting, or a process it forked holds the lock), SignalError when it is another user's."""
    try:
        os.kill(holder.pid, signal.SIGUSR1)
    except ProcessLookupError:
        raise LockedError(
            f"{state} is locked, but the daemon it names (pid {holder.pid}) is not running: "
            "it may be stopping; try again in a moment"
        ) from None
    except PermissionError:
        raise SignalError(
            f"not allowed to signal the daemon (pid {holder.pid}) that holds {state}: run this "
            "as its user, or `systemctl kill -s USR1 --kill-whom=main photocluster` as root"
        ) from None


def _status(config: Config, args: argparse.Namespace) -> int:
    report = status.collect(config.paths.state)
    print(json.dumps(report, indent=2) if args.json else status.render(report))
    return EXIT_OK


def _confirm_deletions(config: Config, args: argparse.Namespace) -> int:
    held = status.collect(config.paths.state)["held_deletions"]
    if not held:
        print("no deletions are waiting for a confirmation")
        return EXIT_OK
    vanish.confirm(config.paths.state, [entry["folder"] for entry in held])
    for entry in held:
        where = repr(entry["folder"]) if entry["folder"] else "the photo folder"
        print(f"confirmed: {entry['photos']} photos under {where} are deleted")
    holder = state_holder(config.paths.state)
    print("the running daemon applies this within seconds" if holder is not None
          else "the next `photocluster run` or `scan` applies this")
    return EXIT_OK


def _check_config(config: Config, args: argparse.Namespace) -> int:
    print(f"{config.source}: ok")
    print(f"  photos:   {config.paths.photos}")
    print(f"  clusters: {config.paths.clusters}")
    print(f"  state:    {config.paths.state}")
    return EXIT_OK


def _weights(config: Config, args: argparse.Namespace) -> int:
    from photocluster.library import weights_dir

    settings = config.embedding
    found = weights.resolve(settings.weights, settings.preprocessing, weights_dir(config))
    print(
        f"{found.origin}\n  file: {found.path}\n  sha256: {found.sha256}\n"
        f"  preprocessing: {found.preprocessing}"
    )
    return EXIT_OK


_COMMANDS: dict[str, Callable[[Config, argparse.Namespace], int]] = {
    "run": _run,
    "scan": _scan,
    "recluster": _recluster,
    "status": _status,
    "confirm-deletions": _confirm_deletions,
    "check-config": _check_config,
    "weights": _weights,
}
