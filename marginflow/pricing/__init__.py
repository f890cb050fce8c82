"""Vectorised option pricing over struct-of-arrays batches.

European Black-Scholes-Merton with continuous yield, Black-76 for options on futures,
American exercise by the Andersen-Lake-Offengenden fixed-point method, Greeks and implied
volatility. May import ``marginflow.core``.
"""
