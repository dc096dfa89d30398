"""Labelling projects: the project directory and its journals, batch formats, label checks,
Label Studio."""
