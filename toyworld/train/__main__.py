"""`python -m toyworld.train`: the whole training chain (see chain.py)."""

from .chain import main

if __name__ == "__main__":
    main()
