"""`python -m roost` runs the command line."""

from roost.cli import main

if __name__ == "__main__":
    main()
