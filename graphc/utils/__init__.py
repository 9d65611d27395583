"""`graphc.utils`: data loading (`graphc.utils.data`)."""
from graphc.utils import data

__all__ = ["data"]
