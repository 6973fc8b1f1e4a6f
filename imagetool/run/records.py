"""Container records: <store root>/containers/<id>/container.json (written atomically),
the json-file log <id>-json.log and the bundle directory. Names and ids are unique under a
lock file (<root>/containers/.lock)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

from imagetool.errors import ImagetoolError

RECORD = "container.json"


class ContainerError(ImagetoolError):
    """A container verb failed for a reason the user can act on."""
    pass


def now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class Records:
    def __init__(self, store_root: str) -> None:
        self.root = os.path.abspath(store_root)
        self.dir = os.path.join(self.root, "containers")
        from imagetool.rootless.paths import state_dir
        self.runtime_root = state_dir(self.root)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.dir, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def path(self, cid: str, *parts: str) -> str:
        return os.path.join(self.dir, cid, *parts)

    def ids(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.dir)
                          if os.path.isfile(os.path.join(self.dir, n, RECORD)))
        except FileNotFoundError:
            return []

    def load(self, cid: str) -> dict[str, Any]:
        try:
            with open(self.path(cid, RECORD)) as f:
                return json.load(f)
        except FileNotFoundError:
            raise ContainerError(f"no such container: {cid}") from None

    def save(self, rec: dict[str, Any]) -> None:
        path = self.path(rec["Id"], RECORD)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(rec, f, indent=2)
        os.rename(tmp, path)

    def update(self, cid: str, **state: Any) -> dict[str, Any]:
        with self.lock():
            rec = self.load(cid)
            rec["State"].update(state)
            self.save(rec)
            return rec

    def all(self) -> list[dict[str, Any]]:
        out = []
        for cid in self.ids():
            with contextlib.suppress(ContainerError, ValueError):
                out.append(self.load(cid))
        return out

    def new(self, name: str | None, rec: dict[str, Any]) -> dict[str, Any]:
        """Reserve an id and a unique name; write the record's first version."""
        with self.lock():
            taken = {r.get("Name") for r in self.all()}
            if name:
                _check_name(name)
                if name in taken:
                    raise ContainerError(f"the container name {name!r} is already in use")
            else:
                name = _random_name(taken)
            import secrets
            cid = secrets.token_hex(32)
            os.mkdir(self.path(cid), 0o700)
            rec = dict(rec, Id=cid, Name=name, Created=now())
            rec.setdefault("State", {}).update(Status="created", Running=False, Pid=0,
                                               ExitCode=0, StartedAt="", FinishedAt="")
            rec["LogPath"] = self.path(cid, f"{cid}-json.log")
            self.save(rec)
            return rec

    def resolve(self, text: str) -> str:
        """An id, a unique id prefix or a name -> the id."""
        ids = self.ids()
        if text in ids:
            return text
        for r in self.all():
            if r.get("Name") == text:
                return r["Id"]
        hits = [i for i in ids if i.startswith(text)] if text else []
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise ContainerError(f"{text} matches {len(hits)} containers; be specific")
        raise ContainerError(f"no such container: {text}")

    def rename(self, cid: str, name: str) -> None:
        """Give `cid` the unique, valid `name`."""
        with self.lock():
            _check_name(name)
            if any(r.get("Name") == name and r["Id"] != cid for r in self.all()):
                raise ContainerError(f"the container name {name!r} is already in use")
            rec = self.load(cid)
            rec["Name"] = name
            self.save(rec)

    def remove(self, cid: str) -> None:
        shutil.rmtree(self.path(cid), ignore_errors=True)


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "_.-" for c in name) or not name[0].isalnum():
        raise ContainerError(f"invalid container name {name!r} (letters, digits, _ . -, "
                             "starting with a letter or digit)")


def monitor_alive(rec: dict[str, Any]) -> bool:
    pid = (rec.get("State") or {}).get("MonitorPid") or 0
    start = (rec.get("State") or {}).get("MonitorStart")
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return False
    fields = raw[raw.rindex(b")") + 2:].split()
    return fields[0] not in (b"Z", b"X") and (start is None or fields[19].decode() == start)


def proc_start(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return raw[raw.rindex(b")") + 2:].split()[19].decode()


def status(rec: dict[str, Any]) -> str:
    """created | running | exited; a record whose monitor died says 'dead'."""
    st = rec.get("State") or {}
    s = st.get("Status", "created")
    if s in ("running", "created") and st.get("MonitorPid") and not monitor_alive(rec):
        return "dead"
    return s


_ADJ = ["brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "kind", "lucid",
        "merry", "nifty", "proud", "quiet", "sharp", "tender", "witty", "zen", "bold"]
_NOUN = ["turing", "hopper", "lovelace", "ritchie", "thompson", "knuth", "dijkstra", "curie",
         "noether", "euler", "gauss", "kepler", "shannon", "torvalds", "babbage", "hamilton"]


def _random_name(taken: set[Any]) -> str:
    import secrets
    for _ in range(100):
        n = f"{secrets.choice(_ADJ)}_{secrets.choice(_NOUN)}"
        if n not in taken:
            return n
    return f"c_{secrets.token_hex(6)}"


def image_users(store: Any, names: list[str]) -> list[tuple[str, str]]:
    """(container id, image ID) of the containers, in any state, that use an image which
    removing the store names `names` would leave with no name at all (docker's rmi conflict)."""
    from imagetool import views
    ids = {views.image_id(store, store.get_image(n) or {}) for n in names} - {""}
    if not ids:
        return []
    gone = set(names)
    still = {views.image_id(store, d) for d in store.list_images()
             if views.name_of(d) not in gone}
    orphaned = ids - still
    return [(r["Id"], r.get("ImageID", "")) for r in Records(store.root).all()
            if r.get("ImageID") in orphaned]
