"""Linux mechanisms used by the runtime: syscalls, namespaces, mounts, devices, credentials."""
