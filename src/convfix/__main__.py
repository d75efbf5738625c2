"""`python -m convfix` is the `convfix` command."""

from convfix.entry import main

main()
