"""CoDi: image-conditioned few-step students (conditional diffusion distillation), built image-free
from the teacher's own cached latents."""
