"""The shared base under every package of the toolkit: errors, audio I/O, atomic writes, mel STFT, plotting.

It imports none of ``tclap``, ``eval_gen``, ``audioldm_cond``, ``demo`` or ``conductor``; all of them may import it.
"""
