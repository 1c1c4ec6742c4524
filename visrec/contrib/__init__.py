"""Adapters that configure visrec for well-known shop frameworks in a few lines."""
