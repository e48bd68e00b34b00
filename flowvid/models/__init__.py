"""Models: encoder (timm), temporal core (ConvGRU/ConvLSTM), decoder, heads; the stages after
the network (Lucas-Kanade, expected error); ``create_model`` builds them by name."""

from flowvid.models.build import check_model_args, create_model
from flowvid.models.model import FlowVid, StreamState

__all__ = ["FlowVid", "StreamState", "check_model_args", "create_model"]
