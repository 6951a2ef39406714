"""Command line: `photocluster [-c CONFIG] run|scan|recluster|status|similar|name|pin|unpin|
confirm-deletions|check-config|weights`.

The only place that configures logging and turns errors into exit codes, each failure one
line on stderr:
0 ok; 1 runtime error; 2 bad configuration or usage (a name or photo refused as given); 3
another photocluster holds this state directory (the units' RestartPreventExitStatus= names 2
and 3: restarting fixes neither).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# Light imports only: `status` must answer in under a second at a million photos, and the flows
# (`library`, `marking`, `similar`) pull in scikit-learn, OpenCV and matplotlib (~3 s here).
from photocluster import mailbox, status, vanish, weights
from photocluster.config import Config, load_config
from photocluster.errors import (
    ConfigError,
    LockedError,
    PhotoclusterError,
    SignalError,
    UsageError,
)
from photocluster.locking import Holder, state_holder

logger = logging.getLogger("photocluster")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_LOCKED = 0, 1, 2, 3
ANSWER_SECONDS = 60.0  # how long name/pin/unpin wait for a busy daemon's answer
MOST_SIMILAR = 1000  # `similar -n`: a ranked folder of more is no longer browsed


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.verbose)
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
    if isinstance(error, UsageError):
        return EXIT_CONFIG
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
    like = commands.add_parser(
        "similar", help="the photos most like PATH, linked into the tree's _similar/<name>/")
    like.add_argument("path", type=Path, help="a photo, in the library or anywhere")
    like.add_argument("-n", type=_how_many, default=10, help=f"how many (1..{MOST_SIMILAR})")
    like.add_argument("--json", action="store_true")
    named = commands.add_parser("name", help="name a cluster (as renaming its folder does)")
    named.add_argument("cluster", help="its identity (cluster-007) or its folder's name")
    named.add_argument("new_name", metavar="NEW-NAME", help="its identity clears a name")
    photo = "relative to the photo folder, absolute, or a link in the cluster tree"
    pinned = commands.add_parser("pin", help="keep a photo in a cluster (as moving its link does)")
    pinned.add_argument("photo", help=photo)
    pinned.add_argument("cluster", help="its identity or its folder's name")
    unpinned = commands.add_parser("unpin", help="let regrouping place a pinned photo again")
    unpinned.add_argument("photo", help=photo)
    commands.add_parser(
        "confirm-deletions",
        help="delete the photos `status` says look deleted (a folder or mount that vanished)",
    )
    commands.add_parser("check-config", help="validate the configuration")
    commands.add_parser("weights", help="fetch and verify the VGG16 weights")
    return parser


def _how_many(text: str) -> int:
    """argparse type of `similar -n`: a usage error (exit 2) outside 1..MOST_SIMILAR."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= MOST_SIMILAR:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MOST_SIMILAR}")
    return number


class OneLineFormatter(logging.Formatter):
    """Every log message on one line: a file name may hold a newline or terminal control
    characters, which would forge journal lines. Control characters (and the surrogate escapes
    of bytes that are not UTF-8) in the message are shown escaped; a traceback stays as it is."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.msg, record.args
        record.msg, record.args = escape_controls(record.getMessage()), None
        try:
            return super().format(record)
        finally:
            record.msg, record.args = saved


_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def escape_controls(text: str) -> str:
    """`text` with each control character or surrogate escape shown as Python would escape it."""
    return _CONTROLS.sub(lambda found: ascii(found.group())[1:-1], text)


def setup_logging(verbose: bool) -> None:
    """The program's logging: one line a record on stderr (the journal under systemd)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL", "faiss"):  # import chatter
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
    from photocluster import library  # heavy (scikit-learn, scipy): not for `status`

    # The vectors are in the catalog: no model to load, no weights to fetch (a dry run must
    # never touch the network).
    with library.open_library(config, "recluster", library.catalog_model) as lib:
        if not args.dry_run:
            library.mend(lib)  # the user's edits of the tree first: a rebuild would drop them
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


def _name(config: Config, args: argparse.Namespace) -> int:
    return _correct(config, "name", [args.cluster, args.new_name])


def _pin(config: Config, args: argparse.Namespace) -> int:
    from photocluster import marking

    return _correct(config, "pin", [marking.photo_path(args.photo, config.paths.photos),
                                    args.cluster])


def _unpin(config: Config, args: argparse.Namespace) -> int:
    from photocluster import marking

    return _correct(config, "unpin", [marking.photo_path(args.photo, config.paths.photos)])


def _correct(config: Config, verb: str, arguments: list[str]) -> int:
    """Ask the running daemon to do it (it is the catalog's one writer), or do it here."""
    holder = state_holder(config.paths.state)
    if holder is not None and holder.role == "run":
        print(_ask_daemon(config.paths.state, holder, verb, arguments))
        return EXIT_OK
    from photocluster import library, marking

    verbs: dict[str, Callable[..., str]] = {
        "name": marking.name, "pin": marking.pin, "unpin": marking.unpin}
    with library.open_library(config, verb, library.catalog_model) as lib:
        library.mend(lib)
        print(verbs[verb](lib.reader, *arguments))
    return EXIT_OK


def _ask_daemon(state: Path, holder: Holder, verb: str, arguments: list[str]) -> str:
    """Post the request and wait for the answer. Raises UsageError when the daemon refused it
    as given, PhotoclusterError when it failed or did not answer in time."""
    request_id = mailbox.post(state, {"verb": verb, "arguments": arguments})

    def alive() -> bool:
        return state_holder(state) is not None

    reply = mailbox.wait(state, request_id, ANSWER_SECONDS, alive)
    if reply is None:
        raise PhotoclusterError(
            f"the daemon (pid {holder.pid}) has not answered within {ANSWER_SECONDS:g} s; it "
            "carries the request out when it gets to it (see its log)")
    if not reply.ok:
        raise UsageError(reply.message) if reply.usage else PhotoclusterError(reply.message)
    return reply.message


def _status(config: Config, args: argparse.Namespace) -> int:
    report = status.collect(config.paths.state)
    print(json.dumps(report, indent=2) if args.json else status.render(report))
    return EXIT_OK


def _similar(config: Config, args: argparse.Namespace) -> int:
    from photocluster import library, similar

    answer = similar.find(config, args.path, args.n, library.vgg16_embedder)
    root = config.paths.photos
    if args.json:
        print(json.dumps({
            "photo": str(args.path), "in_library": answer.in_library,
            "similar": [{"path": str(root / m.path), "relative": m.path,
                         "similarity": round(m.similarity, 6)} for m in answer.matches],
            "folder": None if answer.folder is None else str(answer.folder),
            "seconds": round(answer.seconds, 3)}, indent=2))
        return EXIT_OK
    for match in answer.matches:
        print(f"{match.similarity:.4f}  {status.printable(str(root / match.path))}")
    if answer.folder is None:
        print("not linked into the cluster tree (none yet, or not writable)")
    else:
        print(f"linked into {status.printable(str(answer.folder))}/")
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
    "similar": _similar,
    "name": _name,
    "pin": _pin,
    "unpin": _unpin,
    "confirm-deletions": _confirm_deletions,
    "check-config": _check_config,
    "weights": _weights,
}
