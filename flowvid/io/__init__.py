"""Reading and writing videos and flow files."""

from flowvid.io.atomic import atomic_output
from flowvid.io.flowfile import FlowSequence, open_flow, read_flow, write_flow
from flowvid.io.video import VideoReader, VideoWriter, open_video, write_video

__all__ = [
    "FlowSequence",
    "VideoReader",
    "VideoWriter",
    "atomic_output",
    "open_flow",
    "open_video",
    "read_flow",
    "write_flow",
    "write_video",
]
