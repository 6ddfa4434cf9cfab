"""Random Conditioning distillation: data, losses, feature taps and the training loop."""
