"""cocotb benches of the SPEQ blocks, run from pytest through `tb.runner`."""
