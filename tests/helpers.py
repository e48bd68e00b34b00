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
