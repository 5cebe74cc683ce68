"""`python -m churnsense.synth [n_customers=... seed=...]`: generate the demo customer base."""

from churnsense.synth.generate import main

main()
