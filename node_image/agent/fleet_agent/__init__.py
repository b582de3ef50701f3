"""fleet-agent: the node agent of inference-fleet GPU nodes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fleet-agent")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"
