"""Image trust: cosign-compatible keys, signatures and attestations stored in the registry,
Red Hat "simple signing" with OpenPGP keys and a lookaside store, containers-policy.json(5)
enforcement on pull, and OCI 1.1 artifacts (subject + referrers). One module per job; each is
imported only by the verb that needs it."""
