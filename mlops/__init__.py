"""The ``mlops`` command line: the top floor, which only wires each part's commands."""
