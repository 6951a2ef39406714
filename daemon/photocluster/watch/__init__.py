"""Watching the photo folder: watchdog events in (`observers`), settled changes out (`settle`),
for the worker to take in batches (`feed`); `mounts` tells network and FUSE mounts apart."""

from photocluster.watch.change import Change
from photocluster.watch.feed import ChangeFeed

__all__ = ["Change", "ChangeFeed"]
