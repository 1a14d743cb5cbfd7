"""The storage targets, as readers of the archive: which one the configuration names."""

from __future__ import annotations

from .archive_reader import ArchiveReader, FileArchiveReader
from .config import Config


def open_reader(config: Config) -> ArchiveReader:
    """The reader of ``[archive] target``; close it (or use ``with``): the S3 one holds a client."""
    if config.archive.target == "s3":
        from .s3reader import S3ArchiveReader

        return S3ArchiveReader(config)
    return FileArchiveReader(config.archive.root, config.kore.bot_id)


__all__ = ["open_reader"]
