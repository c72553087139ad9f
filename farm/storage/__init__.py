"""Content-addressed blob storage (owns: the store interface and its backends; imports no DB)."""

from farm.storage.base import BlobStore, PutResult, check_hash, sha256_file
from farm.storage.disk import DiskStore
from farm.storage.s3 import S3Store

__all__ = ["BlobStore", "DiskStore", "PutResult", "S3Store", "check_hash", "sha256_file"]
