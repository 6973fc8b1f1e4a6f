"""pyrunc: an OCI runtime with runc's command line. The library is the product; cli.py is thin."""

__version__ = "0.1.0"
OCI_VERSION = "1.3.0"
