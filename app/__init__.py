"""Entry points, settings and wiring."""
