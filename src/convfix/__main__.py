"""`python -m convfix` is the `convfix` command."""

from convfix.cli import main

main()
