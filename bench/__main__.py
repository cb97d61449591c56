"""`python -m bench [--runs K] [--store sqlite|postgresql] [--quick] [--app-dir PATH]`."""

from bench.suite import main

if __name__ == "__main__":
    main()
