"""Hash models: a backbone plugin plus the hash layer (see :class:`HashModel`)."""

from .backbones import Backbone
from .hash_model import HashModel

__all__ = ["Backbone", "HashModel"]
