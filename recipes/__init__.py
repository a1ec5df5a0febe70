"""The recipes ship inside the package as ``selfj_trl.recipes`` (their measured findings are read at run time: see
:mod:`selfj_trl.measured`)."""
