"""`python -m worker …`: the operators' command line."""
