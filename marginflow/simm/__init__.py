"""ISDA SIMM (calibrations held as data, one file per version) and Schedule IM from CRIF
sensitivities. May import ``marginflow.core`` only."""
