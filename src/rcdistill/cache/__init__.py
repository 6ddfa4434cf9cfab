"""Teacher-latent cache: the only "images" distillation ever sees."""
