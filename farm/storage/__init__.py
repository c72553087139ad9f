"""Content-addressed blob storage (owns: the store interface and its backends; imports no DB)."""

from farm.storage.base import BlobStore, PutResult, check_hash, sha256_file
from farm.storage.disk import DiskStore

__all__ = ["BlobStore", "DiskStore", "PutResult", "check_hash", "sha256_file"]
