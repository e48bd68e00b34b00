"""Training: LightningModule, losses, metrics, and the train() entry point."""
