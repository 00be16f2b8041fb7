"""Pure functions from records to numbers: no printing, no plotting, no devices."""
