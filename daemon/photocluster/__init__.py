"""photocluster: keeps a photo folder sorted into browsable folders of similar photos."""

__version__ = "0.1.0"
