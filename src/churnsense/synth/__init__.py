"""The generated demo customer base: attributes, event histories, feedback, offers and the ground truth."""
