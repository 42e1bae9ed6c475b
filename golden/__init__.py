"""NumPy golden model of SPEQ: the SPEQ-16 format (`speq16`) and the arithmetic contract (`arith`)."""
