"""``map_boxes``: do a feature's activation maps highlight the object? (paper section 3,
contribution II; docs/maps.md). For each feature's k most activating images that have boxes,
the share of the map's positive mass inside the image's own-class boxes and the pointing game
(the map's peak inside a box), against the boxes' share of the input as chance; all in the
model's input frame."""

from __future__ import annotations

from runner.kinds.map_boxes.params import MapBoxesParams
from runner.kinds.sites import SiteReadingKind


class MapBoxes(SiteReadingKind):
    """Activation maps of the top images against their object boxes, as a fused-pass share."""

    name = "map_boxes"
    version = 1
    Params = MapBoxesParams
    fusable = True
    needs_boxes = True
    summary = ("share of each feature's activation-map mass inside the object boxes of its top "
               "images, and the pointing game, against chance (claim 2)")


KIND = MapBoxes()
