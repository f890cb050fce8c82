"""Market data containers: rate curves, dividends, implied-volatility surfaces.
May import ``marginflow.core`` only."""
