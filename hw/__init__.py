"""SPEQ gateware: Amaranth 0.5 components of the SPEQ accelerator.

One module per component family: `hw.fp` (floating-point layouts),
`hw.decoder` (the exponent-remap decoder), and `hw.config` (the one
configuration object of a build).
"""
