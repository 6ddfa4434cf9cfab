"""The toy teacher: a real StableDiffusionPipeline trained on the shapes world."""
