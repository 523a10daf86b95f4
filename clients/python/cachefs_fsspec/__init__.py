"""fsspec file system for cachefs clusters ("cachefs://path"): reads go to
the page server of each stripe's owner. See clients/python/README.md."""
from .core import CachefsFile, CachefsFileSystem, LoadError

__all__ = ["CachefsFile", "CachefsFileSystem", "LoadError"]
