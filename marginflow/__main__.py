"""``python -m marginflow`` runs the command-line tool."""

from marginflow.cli.app import main

main()
