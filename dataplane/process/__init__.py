"""How a data plane runs: the server, its flags, its worker processes and background loops."""
