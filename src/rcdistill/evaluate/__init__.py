"""Stage `evaluate`: teacher and student side by side on the seen and unseen eval sets."""
