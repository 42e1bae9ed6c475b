"""Host software for a SPEQ board: the UART protocol client (`host.board`) and its CLI."""
