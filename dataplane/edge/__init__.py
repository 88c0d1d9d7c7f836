"""The request path: the HTTP edge from the route table to the relayed answer."""
