"""Rootless imagetool: per-user store and state paths (paths.py), the user's subordinate id
ranges (subids.py) and entering a user namespace mapped through newuidmap/newgidmap
(userns.py). Nothing here is imported on root's paths except paths.py, which is stdlib-light."""
