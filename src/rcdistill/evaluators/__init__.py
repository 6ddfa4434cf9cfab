"""World evaluators, trained on rendered images and independent of the teacher."""
