"""Models: encoder (timm), temporal core (ConvGRU/ConvLSTM), decoder, heads."""

from flowvid.models.model import FlowVid, StreamState, create_model

__all__ = ["FlowVid", "StreamState", "create_model"]
