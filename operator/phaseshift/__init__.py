"""phaseshift: carries an application through the phases of scaling from zero to a million users."""

__version__ = "0.1.0"
