"""Building images from Dockerfiles.

dockerfile.py parses a Dockerfile into typed instructions (with line numbers and the original
text); expand.py does the builder's variable substitution; dockerignore.py decides which context
files COPY/ADD may see; plan.py turns the parse into a stage graph with ARG scoping and
`--target` pruning; cachekey.py computes a step's cache key. Nothing here runs anything.
"""

from .dockerfile import Dockerfile, DockerfileError, parse, parse_file

__all__ = ["Dockerfile", "DockerfileError", "parse", "parse_file"]
