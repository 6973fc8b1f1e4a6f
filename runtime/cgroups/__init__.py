"""cgroup managers: one interface (Manager), a v1 and a v2 implementation chosen by the host."""

from runtime.cgroups.manager import Manager, load_manager, new_manager

__all__ = ["Manager", "new_manager", "load_manager"]
