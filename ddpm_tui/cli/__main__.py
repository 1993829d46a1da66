"""``python -m ddpm_tui.cli``: the ``ddpm`` command without its installed script (tests and
benchmarks run it this way, against the checkout)."""

from ddpm_tui.cli import main

main()
