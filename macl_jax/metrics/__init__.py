"""Pure metric functions of arrays; each states its conventions in its docstring."""
