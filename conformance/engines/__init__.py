"""Engine conformance: containerd 1.6 (ctr), dockerd 20.10 and podman 4.3 driving pyrunc."""
