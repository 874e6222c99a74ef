"""Network pieces shared by the methods: frozen backbones, RD blocks, maps."""

from fuadnb.nn import backbones, blocks, maps

__all__ = ["backbones", "blocks", "maps"]
