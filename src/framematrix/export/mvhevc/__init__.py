"""Apple spatial video (MV-HEVC stereo in QuickTime) from two eyes' frames, with pip pieces only.

Each eye is encoded on its own by libx265 (PyAV) with identical settings; the right-eye stream is
spliced in as layer 1 of a two-layer MV-HEVC stream (:mod:`.splice`), muxed to ``.mov`` by
FFmpeg's muxer and given Apple's ``vexu``/``hfov`` boxes (:mod:`.mov`).
See :func:`write_spatial_video`.
"""

from framematrix.export.mvhevc.writer import write_spatial_video

__all__ = ["write_spatial_video"]
