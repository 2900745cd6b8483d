"""Examples of using gantune from outside its packages; run them from the repository root."""
