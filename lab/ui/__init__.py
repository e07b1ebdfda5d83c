"""Interactive views for the notebooks (ipywidgets), on top of `lab.analysis`."""
