"""Weakly supervised anomaly head on exported snippet features (`fgclip head train / eval / compare`).

Library only: reads `fgclip export-features` folders and label / annotation files, never a run config.
`features` (inputs), `model` (the head), `objective` (MIL loss), `train`, `evaluate`, `compare`.
"""
