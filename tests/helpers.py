"""What several test modules share."""

# the smallest flow model worth streaming: every size at its minimum, no ImageNet weights
TINY = dict(
    encoder="resnet18",
    pretrained="none",
    hidden=16,
    context=16,
    corr_radius=1,
    coarse_corr_radius=1,
    decoder_widths=[16, 8, 8],
    core="gru",
    task="flow",
)


def write_vfr_video(path, frames: int = 12, size: int = 48, steps_ms=(30, 10)):
    """An H.264 mp4 whose frame intervals alternate between ``steps_ms`` (a variable frame
    rate, as a camera that drops frames writes), random frames."""
    from fractions import Fraction

    import av
    import numpy as np

    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(50))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i in range(frames):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            t += steps_ms[i % len(steps_ms)]
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
