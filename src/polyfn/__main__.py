"""`python -m polyfn` is the `polyfn` command."""

from polyfn.cli.main import main

main()
