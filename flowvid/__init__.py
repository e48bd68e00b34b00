"""flowvid: learn blood flow from microscope video."""

__version__ = "0.1.0"
