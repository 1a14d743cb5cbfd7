"""kore-archiver: a complete, verifiable archive of Kore.ai Contact Center recordings and voicemails."""

__version__ = "0.1.0"
