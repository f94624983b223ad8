"""`python -m devup`."""

from devup.cli import main

main()
