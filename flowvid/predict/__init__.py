"""Prediction: videos streamed through a model (or a classical method) in constant memory,
one video or a folder of them; the outputs' writers are in :mod:`flowvid.io`."""
