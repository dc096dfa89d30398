"""star's version: saved into every run directory and project, which a later version refuses
to resume rather than misread."""

__version__ = "0.3.0"
