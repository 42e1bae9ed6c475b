"""SPEQ RTL generator: ``python -m rtl_gen.build`` writes Verilog and its manifest."""
