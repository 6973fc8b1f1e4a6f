"""imagetool: build OCI images from Dockerfiles, ship them via registries, run them on pyrunc."""

__version__ = "0.1.0"
