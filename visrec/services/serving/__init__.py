""""Visually similar", search by photo, product cards and the served model versions."""
