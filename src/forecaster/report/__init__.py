"""Finished results -> terminal tables and output files (the last step of the flow). Rendering only:
nothing here computes a figure, and nothing here imports crm, model, sim or analysis."""
