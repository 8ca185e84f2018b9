"""Data sets emod trains and evaluates on."""
