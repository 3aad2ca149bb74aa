"""`python -m decbench ...`: the CLI, as launchers such as `accelerate launch -m decbench` run it."""

from decbench.cli.app import main

if __name__ == "__main__":
    main()
