"""The `polyfn` command line (Typer + Rich); entry point `polyfn.cli.main:main`."""
