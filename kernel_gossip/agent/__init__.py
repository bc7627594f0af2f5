"""The node agent: kernel truth measured on the node, delivered to the operator."""
