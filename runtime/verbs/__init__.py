"""The cgroup verbs on a created container, one module each after runc's commands:
update.py, events.py, ps.py (the library), cli.py (their flags and handlers).

Imported only by these commands, never on the create/start/state/kill/delete path.
"""

from __future__ import annotations

from runtime.cgroups import load_manager
from runtime.errors import PyruncError

TYPE_CHECKING = False  # typing costs ~2 ms per pyrunc call; annotations are never evaluated
if TYPE_CHECKING:
    from runtime.cgroups.manager import Manager
    from runtime.container import Container


def manager_of(container: Container) -> Manager:
    """The container's cgroup manager; an error if it has none."""
    mgr = load_manager(container.state)
    if mgr is None:
        raise PyruncError(f"container {container.id} has no cgroup")
    return mgr
