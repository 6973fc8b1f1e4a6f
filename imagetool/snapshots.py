"""The layer cache: every layer blob extracted once, in overlayfs's format, under
<store root>/snapshots/sha256/<hex> (not <digest>: overlayfs splits lowerdir at ':'), and an
overlay mount per container over an image's snapshots, so a second container of the same
image copies nothing.

A snapshot is made in <snapshots>/tmp/<hex>.<random> and renamed into place only when the
layer applied completely and its digest and diff_id checked out, so a snapshot directory
that exists is whole. One extraction per digest at a time: a flock on <snapshots>/locks/<hex>
(taken in digest order when several are needed), and whoever gets it second finds the
snapshot made. Temp directories left by a crashed extraction are removed by the next one of
the same digest (it holds that digest's lock, so nobody else is using them).

Snapshots are a pure function of their blob: a hardlink must point into its own layer (it
does in every layer docker, buildkit, umoci or our importer write). Directories a layer did
not list but needed as parents take their owner, mode and times from the lower layers when
the snapshot is made, so they do not hide /tmp's 1777 and the like in the merged view.
Snapshots are read-only lowers; containers write to their own upper directory."""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
import stat
from collections.abc import Iterator, Sequence
from typing import Any

from imagetool import digest as dg
from imagetool import layers
from imagetool.errors import ImagetoolError
from imagetool.store.locks import flock_for

# mount(2) takes one page of options; with lowers named /proc/self/fd/N/<64 hex digits>,
# about 45 layers fit. Images deeper than that need --mode copy.
MAX_OPTIONS = 4000


class SnapshotError(ImagetoolError):
    pass


class Snapshots:
    def __init__(self, store_root: str) -> None:
        self.dir = os.path.join(os.path.abspath(store_root), "snapshots")
        self.tmp = os.path.join(self.dir, "tmp")
        self.locks = os.path.join(self.dir, "locks")

    def path(self, digest: str) -> str:
        algo, hexpart = dg.parse(digest)
        if algo != "sha256":
            raise SnapshotError(f"layer {digest}: only sha256 layers can be snapshotted")
        return os.path.join(self.dir, algo, hexpart)

    def has(self, digest: str) -> bool:
        return os.path.isdir(self.path(digest))

    def list(self) -> list[str]:
        d = os.path.join(self.dir, "sha256")
        try:
            return sorted(f"sha256:{h}" for h in os.listdir(d))
        except FileNotFoundError:
            return []

    def _prepare(self) -> None:
        """<store>/snapshots is root's alone (0700): layers hold world-writable directories
        like /tmp that no other user of the host may reach into."""
        if not os.path.isdir(self.dir):
            os.makedirs(os.path.dirname(self.dir), exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.dir, 0o700)
        for d in (self.tmp, self.locks, os.path.join(self.dir, "sha256")):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d, 0o700)

    @contextlib.contextmanager
    def _locked(self, digests: builtins.list[str]) -> Iterator[None]:
        self._prepare()
        with contextlib.ExitStack() as stack:
            for d in sorted(set(digests)):
                stack.enter_context(
                    flock_for(os.path.join(self.locks, d.split(":", 1)[1])).exclusive())
            yield

    def ensure(self, store: Any, chain: Sequence[tuple[dict[str, Any], str | None]],
               jobs: int | None = None) -> builtins.list[str]:
        """Snapshot paths (bottom layer first) for `chain`, a list of (layer descriptor,
        diff_id or None); layers not yet extracted are extracted now, `jobs` at a time."""
        paths = [self.path(desc["digest"]) for desc, _ in chain]
        first: dict[str, int] = {}
        for i, p in enumerate(paths):
            first.setdefault(p, i)
        missing = [i for p, i in first.items() if not os.path.isdir(p)]
        if not missing:
            return paths
        self._prepare()
        with self._locked([chain[i][0]["digest"] for i in missing]):
            missing = [i for i in missing if not os.path.isdir(paths[i])]
            temps: dict[int, str] = {}
            try:
                for i in missing:
                    self._sweep(chain[i][0]["digest"])
                    temps[i] = os.path.join(
                        self.tmp, f"{chain[i][0]['digest'].split(':', 1)[1]}.{os.urandom(8).hex()}")
                    os.mkdir(temps[i], 0o755)
                implicit = self._extract(store, chain, temps, jobs)
                for i in missing:  # bottom-up: a fixed lower dir feeds the ones above it
                    lowers = [temps.get(j, paths[j]) for j in range(i - 1, -1, -1)]
                    _inherit_dirs(temps[i], implicit[i], lowers)
                for i in missing:
                    os.rename(temps[i], paths[i])
                    del temps[i]
            finally:
                for t in temps.values():
                    shutil.rmtree(t, ignore_errors=True)
        return paths

    def _sweep(self, digest: str) -> None:
        prefix = digest.split(":", 1)[1] + "."
        for name in os.listdir(self.tmp):
            if name.startswith(prefix):
                shutil.rmtree(os.path.join(self.tmp, name), ignore_errors=True)

    def _extract(self, store: Any, chain: Sequence[tuple[dict[str, Any], str | None]],
                 temps: dict[int, str], jobs: int | None) -> dict[int, builtins.list[str]]:
        def one(i: int) -> builtins.list[str]:
            desc, diff_id = chain[i]
            with store.open_blob(desc["digest"], desc.get("size")) as raw:
                st = layers.Applier(temps[i], overlay=True).apply(
                    raw, f"layer {desc['digest']}", diff_id)
            return st.implicit_dirs

        order = sorted(temps)
        workers = max(1, min(jobs or os.cpu_count() or 1, len(order)))
        if workers == 1:
            return {i: one(i) for i in order}
        from concurrent.futures import ThreadPoolExecutor  # ~3 ms (logging): only to unpack
        with ThreadPoolExecutor(workers, thread_name_prefix="snapshot") as pool:
            futures = {i: pool.submit(one, i) for i in order}
            return {i: f.result() for i, f in futures.items()}

    def prune(self, keep: set[str], in_use: set[str] | None = None) -> builtins.list[str]:
        """Remove snapshots whose digest is not in `keep` and not under a mounted overlay
        (or in `in_use`); return the removed digests."""
        busy = set(in_use or ()) | mounted_lowers(self)
        removed = []
        for d in self.list():
            if d in keep or d in busy:
                continue
            with self._locked([d]):
                shutil.rmtree(self.path(d), ignore_errors=True)
            removed.append(d)
        return removed


def prune_store(store: Any, in_use: set[str] | None = None) -> list[tuple[str, int]]:
    """`imagetool prune`'s snapshot part: remove the snapshots of layers no image in `store`
    references, that no overlay mount uses and that are not in `in_use` (layers of the
    containers' bundles); return (digest, bytes freed) pairs. Holds the store's GC lock
    exclusively (unpack() holds it shared from ensure() to its overlay mount, so no snapshot
    is picked up meanwhile) and each snapshot's own lock while removing it."""
    snaps = Snapshots(store.root)
    if not snaps.list() or not os.path.exists(store.layout_path):
        return []
    with flock_for(os.path.join(store.root, ".gc.lock")).exclusive(), store.lock():
        keep = store.live_blobs()
        busy = set(in_use or ()) | mounted_lowers(snaps)
        sizes = {d: _size(snaps.path(d)) for d in snaps.list()
                 if d not in keep and d not in busy}
        if not sizes:
            return []
        return [(d, sizes.get(d, 0)) for d in snaps.prune(keep, busy)]


def _size(path: str) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for top, dirs, files in os.walk(path):
        for name in files + dirs:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(top, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size if not stat.S_ISDIR(st.st_mode) else 0
    return total


def _inherit_dirs(root: str, rels: list[str], lowers: list[str]) -> None:
    """Give directories a layer only implied the metadata of the same directory in the
    topmost lower layer that has one (nothing to do when none does)."""
    for rel in rels:
        for low in lowers:
            try:
                st = os.lstat(os.path.join(low, rel))
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISDIR(st.st_mode):
                path = os.path.join(root, rel)
                os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
                os.chmod(path, stat.S_IMODE(st.st_mode))
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            break  # a file or whiteout there: the layer's directory replaces it


# -- overlay mounts ----------------------------------------------------------------------------
def _escape(path: str) -> str:
    """A path as overlayfs' option parser wants it: ',', ':' and '\\' escaped."""
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def mount_overlay(lowers: list[str], upper: str, work: str, target: str) -> None:
    """Mount an overlay of `lowers` (bottom first; all in one directory, as snapshots are)
    with `upper`/`work` on `target`. The lowers are named through an O_PATH fd of their
    directory (/proc/self/fd/N/<hex>: short, and no chdir, so other threads are not
    disturbed); upper and work by their own paths, escaped."""
    from runtime.linux import syscalls
    if not lowers:
        raise SnapshotError("an overlay needs at least one layer")
    base = os.path.dirname(lowers[0])
    if any(os.path.dirname(p) != base for p in lowers):
        raise SnapshotError("overlay lowers must share one directory")
    dfd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        names = [f"/proc/self/fd/{dfd}/{os.path.basename(p)}" for p in reversed(lowers)]
        opts = (f"lowerdir={':'.join(names)},upperdir={_escape(os.path.abspath(upper))},"
                f"workdir={_escape(os.path.abspath(work))}")
        from imagetool.rootless.paths import rootless
        if rootless():  # whiteouts' and opaque dirs' xattrs are user.overlay.* in here
            opts += ",userxattr"
        if len(opts) > MAX_OPTIONS:
            raise SnapshotError(f"{len(lowers)} layers are too many for one overlay mount "
                                "(about 45 fit); unpack this image with --mode copy")
        try:
            syscalls.mount("overlay", target, "overlay", 0, opts)
        except OSError as e:
            raise SnapshotError(f"cannot mount an overlay on {target}: "
                                f"{os.strerror(e.errno) if e.errno else e}") from None
    finally:
        os.close(dfd)


def is_mountpoint(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(_unescape(line.split()[4]) == real for line in f)


def _unescape(field: str) -> str:
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def unmount(target: str) -> None:
    """Unmount whatever is mounted on `target` (all stacked mounts); detach if busy."""
    from runtime.linux import syscalls
    MNT_DETACH = 2
    while is_mountpoint(target):
        try:
            syscalls.umount2(target, 0)
        except OSError as e:
            if e.errno != 16:  # EBUSY
                raise
            syscalls.umount2(target, MNT_DETACH)


def mounted_lowers(snaps: Snapshots) -> set[str]:
    """Digests of snapshots that some overlay mount in this mount namespace uses (mountinfo
    shows the lowers as they were given: /proc/self/fd/N/<hex>)."""
    out: set[str] = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            parts = post.split()
            if len(parts) < 3 or parts[0] != "overlay":
                continue
            for opt in parts[2].split(","):
                if opt.startswith("lowerdir="):
                    for name in opt[len("lowerdir="):].split(":"):
                        out.add("sha256:" + os.path.basename(name))
    return out
