"""Analysis of a flow: per-segment measurements in um/s, kymographs, the one-page summary,
and drawing flow over its video."""
